//! The address grammar of Go's `net/mail.ParseAddress`, which is what
//! Authgear's `email` format runs, followed by its "no display name" rule.
//!
//! No Rust crate parses addresses the way Go's standard library does (Go is
//! more permissive in places, such as `user@localhost` or `_` in a domain, and
//! stricter in others), and agreeing with the server is the whole point here,
//! so this follows Go's parser step by step: an addr-spec is tried first, then
//! `[phrase] <addr-spec>`, then a group; the verdict is that of Go plus the
//! server's check that the parsed name is empty.

/// Why an address is refused, in words for the report.
pub type Reason = &'static str;

/// Whether Authgear's `email` format accepts `s` (an address without a display name).
pub fn check_email(s: &str) -> Result<(), Reason> {
    let mut p = Parser { s };
    let addrs = p.parse_address(true)?;
    if !p.skip_cfws() {
        return Err("misformatted parenthetical comment");
    }
    if !p.s.is_empty() {
        return Err("more than a single address");
    }
    match addrs.as_slice() {
        [] => Err("empty group"),
        [one] if one.has_name => Err("has a display name"),
        [_] => Ok(()),
        _ => Err("a group of several addresses"),
    }
}

struct Addr {
    has_name: bool,
}

struct Parser<'a> {
    s: &'a str,
}

fn is_vchar(c: char) -> bool {
    ('!'..='~').contains(&c) || c as u32 >= 0x80
}

fn is_atext(c: char, dot: bool) -> bool {
    match c {
        '.' => dot,
        '(' | ')' | '<' | '>' | '[' | ']' | ':' | ';' | '@' | '\\' | ',' | '"' => false,
        _ => is_vchar(c),
    }
}

fn is_qtext(c: char) -> bool {
    c != '\\' && c != '"' && is_vchar(c)
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_dtext(c: char) -> bool {
    c != '[' && c != ']' && c != '\\' && is_vchar(c)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.s.chars().next()
    }

    fn consume(&mut self, c: char) -> bool {
        match self.s.strip_prefix(c) {
            Some(rest) => {
                self.s = rest;
                true
            }
            None => false,
        }
    }

    fn skip_space(&mut self) {
        self.s = self.s.trim_start_matches([' ', '\t']);
    }

    fn skip_cfws(&mut self) -> bool {
        self.skip_space();
        while self.consume('(') {
            if self.consume_comment().is_none() {
                return false;
            }
            self.skip_space();
        }
        true
    }

    /// After `(`: the comment's text, or `None` when it is not closed.
    fn consume_comment(&mut self) -> Option<String> {
        let mut depth = 1;
        let mut comment = String::new();
        let mut chars = self.s.char_indices().peekable();
        let mut end = self.s.len();
        while let Some((i, c)) = chars.next() {
            let mut ch = c;
            if c == '\\' && chars.peek().is_some() {
                // Go skips one byte after a backslash; the next character is taken literally.
                if let Some((_, n)) = chars.next() {
                    ch = n;
                }
            } else if c == '(' {
                depth += 1;
            } else if c == ')' {
                depth -= 1;
            }
            if depth == 0 {
                end = i + c.len_utf8();
                break;
            }
            comment.push(ch);
        }
        if depth != 0 {
            self.s = "";
            return None;
        }
        self.s = &self.s[end..];
        Some(comment)
    }

    fn parse_address(&mut self, handle_group: bool) -> Result<Vec<Addr>, Reason> {
        self.skip_space();
        if self.s.is_empty() {
            return Err("no address");
        }
        let saved = self.s;
        if self.consume_addr_spec().is_ok() {
            self.skip_space();
            let mut has_name = false;
            if self.peek() == Some('(') {
                self.consume('(');
                let comment = self.consume_comment().ok_or("misformatted parenthetical comment")?;
                has_name = comment.split([' ', '\t']).any(|w| !w.is_empty());
            }
            return Ok(vec![Addr { has_name }]);
        }
        self.s = saved;
        let mut has_name = false;
        if self.peek() != Some('<') {
            has_name = self.consume_phrase()?;
        }
        self.skip_space();
        if handle_group && self.consume(':') {
            return self.consume_group_list();
        }
        if !self.consume('<') {
            return Err("missing '@' or angle-addr");
        }
        self.consume_addr_spec()?;
        if !self.consume('>') {
            return Err("unclosed angle-addr");
        }
        Ok(vec![Addr { has_name }])
    }

    fn consume_group_list(&mut self) -> Result<Vec<Addr>, Reason> {
        let mut group = Vec::new();
        self.skip_space();
        if self.consume(';') {
            if !self.skip_cfws() {
                return Err("misformatted parenthetical comment");
            }
            return Ok(group);
        }
        loop {
            self.skip_space();
            group.extend(self.parse_address(false)?);
            if !self.skip_cfws() {
                return Err("misformatted parenthetical comment");
            }
            if self.consume(';') {
                if !self.skip_cfws() {
                    return Err("misformatted parenthetical comment");
                }
                return Ok(group);
            }
            if !self.consume(',') {
                return Err("expected comma");
            }
        }
    }

    /// A phrase (display name); returns whether it names anything, since an
    /// empty quoted string is a word that leaves the name empty.
    fn consume_phrase(&mut self) -> Result<bool, Reason> {
        let mut words = 0usize;
        let mut non_empty = false;
        loop {
            if words > 0 && !self.skip_cfws() {
                return Err("misformatted parenthetical comment");
            }
            self.skip_space();
            if self.s.is_empty() {
                break;
            }
            let word = if self.peek() == Some('"') { self.consume_quoted_string() } else { self.consume_atom(true, true).map(str::to_string) };
            match word {
                Ok(w) => {
                    words += 1;
                    non_empty |= !w.is_empty();
                }
                Err(_) => break,
            }
        }
        if words == 0 {
            return Err("missing word in phrase");
        }
        // Go joins the words with spaces, so two words always make a name.
        Ok(non_empty || words > 1)
    }

    fn consume_addr_spec(&mut self) -> Result<(), Reason> {
        let orig = self.s;
        let r = self.addr_spec_inner();
        if r.is_err() {
            self.s = orig;
        }
        r
    }

    fn addr_spec_inner(&mut self) -> Result<(), Reason> {
        self.skip_space();
        if self.s.is_empty() {
            return Err("no addr-spec");
        }
        if self.peek() == Some('"') {
            if self.consume_quoted_string()?.is_empty() {
                return Err("empty quoted-string in addr-spec");
            }
        } else {
            self.consume_atom(true, false)?;
        }
        if !self.consume('@') {
            return Err("missing @ in addr-spec");
        }
        self.skip_space();
        if self.s.is_empty() {
            return Err("no domain in addr-spec");
        }
        if self.peek() == Some('[') {
            self.consume_domain_literal()
        } else {
            self.consume_atom(true, false).map(|_| ())
        }
    }

    fn consume_quoted_string(&mut self) -> Result<String, Reason> {
        let mut out = String::new();
        let mut escaped = false;
        for (i, c) in self.s.char_indices().skip(1) {
            if escaped {
                if !is_vchar(c) && !is_wsp(c) {
                    return Err("bad character in quoted-string");
                }
                out.push(c);
                escaped = false;
            } else if is_qtext(c) || is_wsp(c) {
                out.push(c);
            } else if c == '"' {
                self.s = &self.s[i + 1..];
                return Ok(out);
            } else if c == '\\' {
                escaped = true;
            } else {
                return Err("bad character in quoted-string");
            }
        }
        Err("unclosed quoted-string")
    }

    fn consume_atom(&mut self, dot: bool, permissive: bool) -> Result<&'a str, Reason> {
        let end = self.s.char_indices().find(|&(_, c)| !is_atext(c, dot)).map_or(self.s.len(), |(i, _)| i);
        if end == 0 {
            return Err("invalid string");
        }
        let (atom, rest) = self.s.split_at(end);
        if !permissive {
            if atom.starts_with('.') {
                return Err("leading dot in atom");
            }
            if atom.contains("..") {
                return Err("double dot in atom");
            }
            if atom.ends_with('.') {
                return Err("trailing dot in atom");
            }
        }
        self.s = rest;
        Ok(atom)
    }

    fn consume_domain_literal(&mut self) -> Result<(), Reason> {
        self.consume('[');
        let Some(close) = self.s.find(']') else { return Err("unclosed domain-literal") };
        let dtext = &self.s[..close];
        if !dtext.chars().all(is_dtext) {
            return Err("bad character in domain-literal");
        }
        if dtext.parse::<std::net::IpAddr>().is_err() {
            return Err("invalid IP address in domain-literal");
        }
        self.s = &self.s[close + 1..];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_email;

    #[test]
    fn go_net_mail_verdicts() {
        for ok in ["a@example.com", "user@localhost", "\"john doe\"@example.com", "a@ex_ample.com", "<a@example.com>", "a@[127.0.0.1]", "a@b.co ()", " a@b.co "]
        {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["a[b]@x", "a\\b@x", "Ann <a@example.com>", "a@b.co (Ann)", "a..b@x", ".a@x", "a@", "@x", "a@b@c", "a@[1.2.3]", "", "g: ;"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
