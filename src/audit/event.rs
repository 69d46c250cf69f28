//! The `audit.k8s.io/v1` `Event` (`staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`),
//! serialized exactly as kube-apiserver writes it (camelCase, empty fields omitted).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::policy::{Level, Stage};

/// One audit event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Always `Event`.
    pub kind: &'static str,
    /// Always `audit.k8s.io/v1`.
    pub api_version: &'static str,
    pub level: Level,
    /// One id per request, shared by its events (the `Audit-ID` response header).
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    /// The authenticated caller.
    pub user: UserInfo,
    /// The identity the proxy sent upstream, when it impersonated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    /// The request body at level `Request` and above (JSON bodies only, as kube-apiserver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Box<RawValue>>,
    /// The response body at level `RequestResponse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Box<RawValue>>,
    /// RFC 3339 with microseconds (`metav1.MicroTime`).
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The object a resource request is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The response's `metav1.Status` as an audit event records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResponseStatus {
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub code: u16,
}

impl Event {
    /// Appends the event exactly as `serde_json::to_vec` writes it (the test
    /// `write_json_is_serde_json` holds them equal). Written by hand because serde_json's
    /// escaping, byte by byte through its generic writer, was the largest part of what an
    /// audited request cost: two events of some 700 bytes each.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = Object::new(out);
        object.string("kind", self.kind);
        object.string("apiVersion", self.api_version);
        object.string("level", self.level.as_str());
        object.string("auditID", &self.audit_id);
        object.string("stage", self.stage.as_str());
        object.string("requestURI", &self.request_uri);
        object.string("verb", &self.verb);
        self.user.write_json(object.field("user"));
        if let Some(user) = &self.impersonated_user {
            user.write_json(object.field("impersonatedUser"));
        }
        if !self.source_ips.is_empty() {
            write_strings(object.field("sourceIPs"), &self.source_ips);
        }
        object.non_empty("userAgent", &self.user_agent);
        if let Some(object_ref) = &self.object_ref {
            object_ref.write_json(object.field("objectRef"));
        }
        if let Some(status) = &self.response_status {
            status.write_json(object.field("responseStatus"));
        }
        if let Some(raw) = &self.request_object {
            object
                .key("requestObject")
                .extend_from_slice(raw.get().as_bytes());
        }
        if let Some(raw) = &self.response_object {
            object
                .key("responseObject")
                .extend_from_slice(raw.get().as_bytes());
        }
        object.string("requestReceivedTimestamp", &self.request_received_timestamp);
        object.string("stageTimestamp", &self.stage_timestamp);
        if !self.annotations.is_empty() {
            write_string_map(object.field("annotations"), &self.annotations);
        }
        object.end();
    }
}

impl UserInfo {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = Object::new(out);
        object.non_empty("username", &self.username);
        object.non_empty("uid", &self.uid);
        if !self.groups.is_empty() {
            write_strings(object.field("groups"), &self.groups);
        }
        if !self.extra.is_empty() {
            let mut extra = Object::new(object.field("extra"));
            for (key, values) in &self.extra {
                write_strings(extra.key(key), values);
            }
            extra.end();
        }
        object.end();
    }
}

impl ObjectReference {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = Object::new(out);
        object.non_empty("resource", &self.resource);
        object.non_empty("namespace", &self.namespace);
        object.non_empty("name", &self.name);
        object.non_empty("apiGroup", &self.api_group);
        object.non_empty("apiVersion", &self.api_version);
        object.non_empty("resourceVersion", &self.resource_version);
        object.non_empty("subresource", &self.subresource);
        object.non_empty("uid", &self.uid);
        object.end();
    }
}

impl ResponseStatus {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = Object::new(out);
        write_string_map(object.field("metadata"), &self.metadata);
        object.non_empty("status", &self.status);
        object.non_empty("message", &self.message);
        object.non_empty("reason", &self.reason);
        let mut digits = [0u8; 5];
        let mut start = digits.len();
        let mut code = self.code;
        loop {
            start -= 1;
            digits[start] = b'0' + (code % 10) as u8;
            code /= 10;
            if code == 0 {
                break;
            }
        }
        object.field("code").extend_from_slice(&digits[start..]);
        object.end();
    }
}

/// A JSON object being written: `{`, then members separated by commas, then `}`.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Starts a member named by a map key: the output, for its value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.comma();
        write_string(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Starts a member named by a field: a name that needs no escaping.
    fn field(&mut self, name: &'static str) -> &mut Vec<u8> {
        self.comma();
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn comma(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    fn string(&mut self, name: &'static str, value: &str) {
        write_string(self.field(name), value);
    }

    /// A string member serde leaves out when empty (`skip_serializing_if = "String::is_empty"`).
    fn non_empty(&mut self, name: &'static str, value: &str) {
        if !value.is_empty() {
            self.string(name, value);
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn write_strings(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, value);
    }
    out.push(b']');
}

fn write_string_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    let mut object = Object::new(out);
    for (key, value) in map {
        write_string(object.key(key), value);
    }
    object.end();
}

/// A JSON string, escaped as serde_json escapes: `"` and `\`, the short forms `\b \t \n \f \r`,
/// `\u00xx` (lowercase hex) for other control characters, everything else as is.
fn write_string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    while let Some(at) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..at]);
        let byte = bytes[at];
        let short = match byte {
            b'"' | b'\\' => byte,
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => b'u',
        };
        out.extend_from_slice(&[b'\\', short]);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hex = |nibble: u8| HEX[usize::from(nibble)];
            out.extend_from_slice(&[b'0', b'0', hex(byte >> 4), hex(byte & 0xf)]);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The first byte from `from` on that JSON escapes (below 0x20, `"` or `\`), eight bytes at a
/// time while there are eight.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    // Whether any byte of a word is one of those (the classic "has a zero byte" test, exact
    // about whether there is one).
    let flagged = |word: u64| {
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        (control | quote | backslash) & HIGH != 0
    };
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        if flagged(u64::from_ne_bytes(word.try_into().unwrap_or_default())) {
            break;
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|at| i + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::backend::testing::{event, object};
    use crate::audit::policy::Level;

    fn assert_serde_json(event: &Event) {
        let mut out = b"prefix".to_vec();
        event.write_json(&mut out);
        let expected = serde_json::to_vec(event).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out[6..]),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(&out[..6], b"prefix", "appended");
    }

    #[test]
    fn write_json_is_serde_json() {
        // Every field set, every optional one present.
        let mut full = event("full", Level::RequestResponse);
        full.user.uid = "u-1".into();
        full.user
            .extra
            .insert("scopes".into(), vec!["a".into(), "b".into()]);
        full.user.extra.insert("empty".into(), Vec::new());
        full.impersonated_user = Some(UserInfo {
            username: "bob".into(),
            ..UserInfo::default()
        });
        full.source_ips.push("::1".into());
        if let Some(object_ref) = full.object_ref.as_mut() {
            object_ref.name = "p".into();
            object_ref.api_group = "apps".into();
            object_ref.resource_version = "42".into();
            object_ref.subresource = "status".into();
            object_ref.uid = "x".into();
        }
        full.response_status = Some(ResponseStatus {
            metadata: [("continue".to_string(), "t".to_string())].into(),
            status: "Failure".into(),
            message: "no".into(),
            reason: "NotFound".into(),
            code: 65535,
        });
        assert_serde_json(&full);
        full.response_status = Some(ResponseStatus {
            code: 0,
            ..ResponseStatus::default()
        });
        full.request_object = Some(object(3));
        full.response_object = Some(object(0));
        full.annotations.insert("a".into(), "b".into());
        full.annotations.insert("c".into(), String::new());
        assert_serde_json(&full);

        // Every optional one absent or empty.
        let mut bare = event("", Level::Metadata);
        bare.user = UserInfo::default();
        bare.source_ips.clear();
        bare.user_agent.clear();
        bare.object_ref = Some(ObjectReference::default());
        bare.response_status = Some(ResponseStatus::default());
        assert_serde_json(&bare);
        bare.object_ref = None;
        bare.response_status = None;
        assert_serde_json(&bare);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut e = event("id", Level::Metadata);
        // Every ASCII character, and some beyond, at every offset of the eight-byte steps.
        let special: Vec<char> = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '€', '\u{2028}', '😀'])
            .collect();
        for c in special {
            for offset in 0..17 {
                let text = format!("{}{c}{}", "a".repeat(offset), "b".repeat(16 - offset));
                e.user_agent = text.clone();
                e.annotations = [(text.clone(), text)].into();
                assert_serde_json(&e);
            }
        }
        e.user_agent = "\"\\\n\u{1}\u{1f}\u{7f}".repeat(5);
        assert_serde_json(&e);
    }
}
