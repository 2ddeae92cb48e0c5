//! Turns a source row into an import record: renames columns, trims values,
//! parses flexible booleans and lists, nests dotted targets
//! (`password.password_hash`, `custom_attributes.plan`) and normalises emails.
//!
//! A mapping file is TOML:
//! ```toml
//! identifier = "email"          # email | preferred_username | phone_number
//! empty = "absent"              # absent | null (null removes a profile field on upsert)
//! list_separator = ","          # for roles / groups held in one cell
//! unmapped = "keep"             # keep (then flagged as unknown keys) | drop
//! # default_password_type = "md5"   # type of hashes when no column says so
//! [columns]
//! "Email" = "email"
//! "Password Hash" = "password.password_hash"
//! "Plan" = "custom_attributes.plan"        # `:integer`, `:number`, `:boolean` suffixes convert
//! "Legacy Id" = "-"                        # "-" drops the column
//! [login_id]                    # the project's Login ID settings, when changed from the defaults
//! email_case_sensitive = false
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::loginid::{LoginIdRules, ReservedNames};
use super::presets::{self, Preset};
use super::{draft, schema, ImportError};

/// Defined with the record's shape (`schema`), named here where mappings say it.
pub use super::schema::Identifier;

/// How a cell's text becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept as text (JSON values from JSON input pass through).
    Text,
    /// Trimmed (normalized later, with the other login ids).
    Email,
    /// `true/false/yes/no/y/n/1/0/t/f/on/off`, any case.
    Bool,
    /// A JSON array, or text split on the list separator.
    List,
    /// Whole number.
    Integer,
    /// Any number.
    Number,
    /// A boolean, inverted (`enabled` / `is_active` into `disabled`).
    NotBool,
    /// `true` when the cell has any value (a `confirmed_at` timestamp into `email_verified`).
    Present,
    /// A phone number stored without its `+` (GoTrue) gets one.
    E164,
}

/// Where a source column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The column is ignored.
    Drop,
    /// The column fills this (possibly nested) record field.
    Field(Vec<String>, Kind),
    /// An object (or JSON text holding one) whose keys become custom attributes.
    Spread,
}

/// Parses a mapping target such as `email`, `-` or `custom_attributes.age:integer`.
pub fn parse_target(spec: &str) -> Result<Target, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "-" {
        return Ok(Target::Drop);
    }
    let (path, suffix) = match spec.split_once(':') {
        Some((p, s)) => (p, Some(s)),
        None => (spec, None),
    };
    if path == "custom_attributes.*" {
        return match suffix {
            None => Ok(Target::Spread),
            Some(s) => Err(format!("`custom_attributes.*` takes no suffix (`:{s}`)")),
        };
    }
    let parts: Vec<String> = path.split('.').map(|p| p.trim().to_string()).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("`{spec}` has an empty path segment"));
    }
    if !schema::is_known_path(&parts) {
        return Err(format!("`{path}` is not a field of the import schema"));
    }
    let default_kind = kind_for(&parts);
    let kind = match suffix {
        None => default_kind,
        Some("not") if default_kind == Kind::Bool => Kind::NotBool,
        Some("present") if default_kind == Kind::Bool => Kind::Present,
        Some("e164") if matches!(path, "phone_number" | "mfa.phone_number") => Kind::E164,
        Some(s @ ("not" | "present" | "e164")) => return Err(format!("`:{s}` does not fit `{path}`")),
        Some(s) if parts[0] != "custom_attributes" => {
            return Err(format!("type suffix `:{s}` is only for custom_attributes"));
        }
        Some("string") => Kind::Text,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Bool,
        Some("list") => Kind::List,
        Some(s) => return Err(format!("unknown type suffix `:{s}`")),
    };
    Ok(Target::Field(parts, kind))
}

fn kind_for(parts: &[String]) -> Kind {
    match parts.join(".").as_str() {
        "email" | "mfa.email" => Kind::Email,
        "email_verified" | "phone_number_verified" | "disabled" => Kind::Bool,
        "roles" | "groups" => Kind::List,
        _ => Kind::Text,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    identifier: Option<Identifier>,
    lowercase_email: Option<bool>,
    list_separator: Option<String>,
    unmapped: Option<String>,
    default_password_type: Option<String>,
    preset: Option<Preset>,
    password_hashes: Option<String>,
    reserved_usernames: Option<String>,
    empty: Option<String>,
    login_id: Option<LoginIdRules>,
    #[serde(default)]
    columns: HashMap<String, String>,
}

/// A loaded mapping, ready to apply to rows.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The identifier field.
    pub identifier: Identifier,
    /// How login ids are judged and normalized (the project's Login ID settings).
    pub login_id: LoginIdRules,
    /// Empty cells become `null` (for nullable fields) instead of being left out.
    pub empty_is_null: bool,
    /// Separator for list cells.
    pub list_separator: String,
    /// Keep columns that the mapping does not name (they then fail the schema check).
    pub keep_unmapped: bool,
    /// Hash type to assume when a record has a hash but no type.
    pub default_password_type: Option<String>,
    /// The export format the rows come in (reshapes rows before mapping).
    pub preset: Option<Preset>,
    /// Auth0's password hashes by user id, joined into the rows.
    hashes: Option<Arc<HashMap<String, String>>>,
    /// The project's reserved usernames, when the mapping names the file.
    pub reserved_usernames: Option<Arc<ReservedNames>>,
    /// Explicit column targets.
    columns: HashMap<String, Target>,
    /// Without a file, recognise well-known names the way `mapping` would draft them.
    auto: bool,
    /// The `password_hashes` file named in the mapping, until `load` reads it.
    password_hashes_file: Option<String>,
    /// The `reserved_usernames` file named in the mapping, until `load` reads it.
    reserved_usernames_file: Option<String>,
}

impl Mapping {
    /// The mapping used when no file is given: recognised names are renamed,
    /// everything else is kept as is (and reported if it is not a schema field).
    pub fn automatic(identifier: Identifier) -> Self {
        Mapping {
            identifier,
            login_id: LoginIdRules::default(),
            empty_is_null: false,
            list_separator: ",".into(),
            keep_unmapped: true,
            default_password_type: None,
            preset: None,
            hashes: None,
            reserved_usernames: None,
            columns: HashMap::new(),
            auto: true,
            password_hashes_file: None,
            reserved_usernames_file: None,
        }
    }

    /// Loads and checks a TOML mapping file.
    pub fn load(path: &Path) -> Result<Self, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImportError::io(format!("read {}", path.display()), e))?;
        let mut m = Self::parse(&text)?;
        // Files named in the mapping are relative to the mapping file.
        let beside = |file: &str| path.parent().map_or_else(|| Path::new(file).to_path_buf(), |d| d.join(file));
        if let Some(file) = m.password_hashes_file.take() {
            m.hashes = Some(Arc::new(presets::load_auth0_hashes(&beside(&file))?));
        }
        if let Some(file) = m.reserved_usernames_file.take() {
            let p = beside(&file);
            let text = std::fs::read_to_string(&p).map_err(|e| ImportError::io(format!("read {}", p.display()), e))?;
            let list = ReservedNames::parse(&text).map_err(|e| ImportError::Mapping(format!("{}: {e}", p.display())))?;
            m.reserved_usernames = Some(Arc::new(list));
        }
        Ok(m)
    }

    /// Parses mapping TOML text.
    pub fn parse(text: &str) -> Result<Self, ImportError> {
        let file: MappingFile = toml::from_str(text).map_err(|e| ImportError::Mapping(e.to_string()))?;
        let mut columns = HashMap::new();
        for (col, spec) in file.columns {
            let t = parse_target(&spec).map_err(|e| ImportError::Mapping(format!("column `{col}`: {e}")))?;
            columns.insert(col, t);
        }
        let keep_unmapped = match file.unmapped.as_deref() {
            None | Some("keep") => true,
            Some("drop") => false,
            Some(o) => return Err(ImportError::Mapping(format!("unmapped must be keep or drop, not `{o}`"))),
        };
        let empty_is_null = match file.empty.as_deref() {
            None | Some("absent") => false,
            Some("null") => true,
            Some(o) => return Err(ImportError::Mapping(format!("empty must be absent or null, not `{o}`"))),
        };
        let mut login_id = file.login_id.unwrap_or_default();
        // The older spelling: `lowercase_email = false` is a case-sensitive project.
        if file.lowercase_email == Some(false) {
            login_id.email_case_sensitive = true;
        }
        Ok(Mapping {
            identifier: file.identifier.unwrap_or(Identifier::Email),
            login_id,
            empty_is_null,
            list_separator: file.list_separator.filter(|s| !s.is_empty()).unwrap_or_else(|| ",".into()),
            keep_unmapped,
            default_password_type: file.default_password_type,
            preset: file.preset,
            hashes: None,
            reserved_usernames: None,
            columns,
            auto: false,
            password_hashes_file: file.password_hashes,
            reserved_usernames_file: file.reserved_usernames,
        })
    }

    fn target_for(&self, column: &str) -> Target {
        if let Some(t) = self.columns.get(column) {
            return t.clone();
        }
        if self.auto {
            if let Some(spec) = self.preset.and_then(|p| p.target(column)).or_else(|| draft::recognize(column)) {
                if let Ok(t) = parse_target(spec) {
                    return t;
                }
            }
        }
        if self.keep_unmapped {
            // Known names keep their natural conversion; unknown ones are flagged later.
            let parts = vec![column.to_string()];
            let kind = kind_for(&parts);
            Target::Field(parts, kind)
        } else {
            Target::Drop
        }
    }

    /// Applies the mapping to one row. Returns the record, or the row's errors.
    pub fn apply(&self, row: Map<String, Value>) -> Result<Map<String, Value>, Vec<String>> {
        self.apply_noting(row, &mut Vec::new())
    }

    /// As `apply`, and notes in `unplaced` each value that had no place in
    /// the record (a nested metadata value, a key no attribute can be named).
    pub fn apply_noting(&self, mut row: Map<String, Value>, unplaced: &mut Vec<String>) -> Result<Map<String, Value>, Vec<String>> {
        if let Some(p) = self.preset {
            p.prepare(&mut row, self.hashes.as_deref());
        }
        let mut out = Map::new();
        let mut errors = Vec::new();
        for (column, value) in row {
            let (mut path, kind) = match self.target_for(&column) {
                Target::Drop => continue,
                Target::Spread => {
                    spread(&column, value, &mut out, unplaced);
                    continue;
                }
                Target::Field(path, kind) => (path, kind),
            };
            // An export that already holds an address object (or null) fills `address` whole.
            if (value.is_object() || value.is_null()) && path.len() == 2 && path[0] == "address" {
                path.truncate(1);
            }
            let nullable = path.len() == 1 && schema::NULLABLE_FIELDS.contains(&path[0].as_str())
                || path.len() == 2 && path[0] == "mfa" && matches!(path[1].as_str(), "email" | "phone_number");
            let converted = match self.convert(value, kind, nullable) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", path.join(".")));
                    continue;
                }
            };
            if let Err(e) = insert_path(&mut out, &path, converted) {
                errors.push(e);
            }
        }
        self.normalise_password(&mut out);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Lower-cases the hash type and fills in the default type, so that the
    /// schema check sees one spelling.
    fn normalise_password(&self, out: &mut Map<String, Value>) {
        let Some(Value::Object(pw)) = out.get_mut("password") else { return };
        match pw.get_mut("type") {
            Some(Value::String(t)) => *t = t.trim().to_ascii_lowercase(),
            Some(_) => {}
            None => {
                if let Some(t) = &self.default_password_type {
                    pw.insert("type".into(), Value::String(t.to_ascii_lowercase()));
                }
            }
        }
    }

    fn convert(&self, value: Value, kind: Kind, nullable: bool) -> Result<Option<Value>, String> {
        let text = match value {
            // JSON `null` is kept: on upsert it removes the value (the schema
            // check refuses it where the server does).
            Value::Null => return Ok(Some(Value::Null)),
            Value::String(s) => {
                let t = s.trim();
                if t.is_empty() {
                    // An empty cell means "no value", not an empty string.
                    return Ok((self.empty_is_null && nullable).then_some(Value::Null));
                }
                if t.len() == s.len() {
                    s
                } else {
                    t.to_string()
                }
            }
            // Structured JSON values are already typed; the schema check judges them.
            other => {
                return Ok(Some(match (kind, other) {
                    (Kind::Bool, Value::Number(n)) if n.as_u64() == Some(0) => Value::Bool(false),
                    (Kind::Bool, Value::Number(n)) if n.as_u64() == Some(1) => Value::Bool(true),
                    (Kind::NotBool, Value::Bool(b)) => Value::Bool(!b),
                    (Kind::Present, _) => Value::Bool(true),
                    (_, o) => o,
                }))
            }
        };
        Ok(Some(match kind {
            Kind::Text => Value::String(text),
            Kind::Email => Value::String(text),
            Kind::Bool => Value::Bool(parse_bool(&text).ok_or_else(|| "not a recognisable true/false value".to_string())?),
            Kind::NotBool => Value::Bool(!parse_bool(&text).ok_or_else(|| "not a recognisable true/false value".to_string())?),
            Kind::Present => Value::Bool(true),
            Kind::E164 if text.starts_with('+') => Value::String(text),
            Kind::E164 => Value::String(format!("+{text}")),
            Kind::List => Value::Array(self.split_list(&text)?),
            Kind::Integer => Value::from(text.parse::<i64>().map_err(|_| "not a whole number".to_string())?),
            Kind::Number => {
                let n: f64 = text.parse().map_err(|_| "not a number".to_string())?;
                serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| "not a finite number".to_string())?
            }
        }))
    }

    fn split_list(&self, text: &str) -> Result<Vec<Value>, String> {
        if text.starts_with('[') {
            return match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(a)) => Ok(a),
                _ => Err("looks like a JSON list but does not parse".into()),
            };
        }
        Ok(text.split(self.list_separator.as_str()).map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect())
    }
}

/// Spreads an object's keys into `custom_attributes`: scalar values under
/// their snake_case names; anything else is noted as having no place.
fn spread(column: &str, value: Value, out: &mut Map<String, Value>, unplaced: &mut Vec<String>) {
    let obj = match value {
        Value::Object(m) => m,
        Value::String(s) if s.trim().is_empty() => return,
        // CSV dumps and Firebase hold the metadata as JSON text.
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => {
                unplaced.push(format!("{column} (not a JSON object)"));
                return;
            }
        },
        Value::Null => return,
        _ => {
            unplaced.push(format!("{column} (not an object)"));
            return;
        }
    };
    let attrs = out.entry("custom_attributes").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(attrs) = attrs else {
        unplaced.push(format!("{column} (custom_attributes is already set to a non-object)"));
        return;
    };
    for (k, v) in obj {
        let name = draft::snake(&k);
        let why = match &v {
            Value::Null => continue,
            Value::Object(_) => Some("an object"),
            Value::Array(_) => Some("a list"),
            _ if !schema::is_attribute_name(&name) => Some("not a possible attribute name"),
            _ if attrs.contains_key(&name) => Some("a second value for the same attribute"),
            _ => None,
        };
        match why {
            Some(why) => unplaced.push(format!("{column}.{k} ({why})")),
            None => {
                attrs.insert(name, v);
            }
        }
    }
    if attrs.is_empty() {
        out.remove("custom_attributes");
    }
}

/// Flexible boolean parsing for spreadsheet-style exports.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" | "on" | "verified" => Some(true),
        "false" | "f" | "no" | "n" | "0" | "off" | "unverified" => Some(false),
        _ => None,
    }
}

fn insert_path(out: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else { return Ok(()) };
    let mut cur = out;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| Value::Object(Map::new()));
        cur = match entry {
            Value::Object(m) => m,
            _ => return Err(format!("{}: two columns map to the same field", path.join("."))),
        };
    }
    if cur.contains_key(last) {
        return Err(format!("{}: two columns map to the same field", path.join(".")));
    }
    cur.insert(last.clone(), value);
    Ok(())
}
