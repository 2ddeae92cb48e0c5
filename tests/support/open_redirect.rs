//! The open-redirect corpus: request targets that try to make a login's
//! return URL leave the site (used by the login redirect and the browser
//! login tests).

/// Request targets that try to make the return URL leave the site.
pub const ATTACKS: &[&str] = &[
    "//evil.com",
    "//evil.com/",
    "///evil.com",
    "/\\evil.com",
    "/%5Cevil.com",
    "/%5cevil.com",
    "/%2F%2Fevil.com",
    "/%2fevil.com",
    "/%2F/evil.com",
    "/.//evil.com",
    "/x/..//evil.com",
    "/%2e%2e//evil.com",
    "/%09/evil.com",
    "https://evil.com/",
    "https://evil.com//evil.com",
    "http://evil.com/path",
    "/login?redirect_uri=https://evil.com",
];
