//! Authorization: does a verified identity meet a route's requirements?
//! Evaluated on every request, from the claims (never skipped, even when the
//! token itself came from a cache).

use serde_json::{Map, Value};

/// What a route demands of an authenticated user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// At least one of these roles.
    pub roles: Vec<String>,
    /// All of these scopes.
    pub scopes: Vec<String>,
    /// Each claim must equal the value.
    pub claims: Vec<(String, Value)>,
}

impl Requirements {
    /// True when the route asks for nothing beyond a valid token.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.scopes.is_empty() && self.claims.is_empty()
    }
}

/// Defined with every other refusal reason in `error`.
pub use crate::error::Denial;

/// Checks `req` against `claims`. `roles_claim` names the claim that holds
/// the user's roles (an array of strings, or a comma/space separated string).
pub fn authorize(req: &Requirements, claims: &Map<String, Value>, roles_claim: &str) -> Result<(), Denial> {
    if !req.roles.is_empty() {
        let held = string_list(claims.get(roles_claim));
        if !req.roles.iter().any(|r| held.iter().any(|h| h == r)) {
            return Err(Denial::MissingRole);
        }
    }
    if !req.scopes.is_empty() {
        let mut held = string_list(claims.get("scope"));
        held.extend(string_list(claims.get("scp")));
        for s in &req.scopes {
            if !held.iter().any(|h| h == s) {
                return Err(Denial::MissingScope(s.clone()));
            }
        }
    }
    for (name, want) in &req.claims {
        if claims.get(name) != Some(want) {
            return Err(Denial::ClaimMismatch(name.clone()));
        }
    }
    Ok(())
}

/// Reads a claim that is an array of strings or a delimited string.
fn string_list(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|p| !p.is_empty()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROLES: &str = "https://authgear.com/claims/user/roles";

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn roles_any_of() {
        let req = Requirements { roles: vec!["admin".into(), "ops".into()], ..Default::default() };
        assert!(authorize(&req, &claims(json!({ROLES: ["ops"]})), ROLES).is_ok());
        assert_eq!(authorize(&req, &claims(json!({ROLES: ["user"]})), ROLES), Err(Denial::MissingRole));
        assert_eq!(authorize(&req, &claims(json!({})), ROLES), Err(Denial::MissingRole));
        // A role must be a whole entry, never a substring.
        assert_eq!(authorize(&req, &claims(json!({ROLES: ["administrator"]})), ROLES), Err(Denial::MissingRole));
    }

    #[test]
    fn scopes_all_of() {
        let req = Requirements { scopes: vec!["a".into(), "b".into()], ..Default::default() };
        assert!(authorize(&req, &claims(json!({"scope": "openid a b"})), ROLES).is_ok());
        assert_eq!(authorize(&req, &claims(json!({"scope": "a"})), ROLES), Err(Denial::MissingScope("b".into())));
        assert_eq!(authorize(&req, &claims(json!({"scope": "ab"})), ROLES), Err(Denial::MissingScope("a".into())));
    }

    #[test]
    fn claims_equal() {
        let req = Requirements { claims: vec![("v".into(), json!(true))], ..Default::default() };
        assert!(authorize(&req, &claims(json!({"v": true})), ROLES).is_ok());
        assert!(authorize(&req, &claims(json!({"v": "true"})), ROLES).is_err());
        assert!(authorize(&req, &claims(json!({})), ROLES).is_err());
    }
}
