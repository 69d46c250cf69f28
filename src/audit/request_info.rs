//! What a request path means to kube-apiserver: verb, API group and version, namespace,
//! resource, subresource and name, as `RequestInfoFactory.NewRequestInfo` computes them
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), and whether
//! kube-apiserver treats the request as long-running.
//!
//! Behaviour follows k8s.io/apiserver v0.36.1 (Kubernetes v1.36.1), with kube-apiserver's
//! configuration: API prefixes `api` and `apis`, `api` the only groupless one.
//!
//! Decisions where the proxy sees bytes Go never hands to the parser:
//! - The path is percent-decoded first, as Go's `URL.Path` is, and only then split on `/`, so
//!   `%2F` separates segments just as it does in kube-apiserver. `+` stays `+`.
//! - A path with a malformed escape (`%zz`, a trailing `%`) never reaches kube-apiserver's
//!   parser (Go's HTTP server answers 400); here it is parsed as it stands, undecoded.
//! - Decoded bytes that are not UTF-8 are replaced with U+FFFD (Go keeps the raw bytes).
//! - `/api/v1/watch` and `/api/v1/proxy` with nothing after them make Go return an error
//!   together with the partial info (and kube-apiserver answers 500); the partial info is
//!   what [`parse`] returns.
//! - The `FieldSelector`/`LabelSelector` fields of Go's struct (only set under the
//!   `AuthorizeWithSelectors` gate) are not part of [`RequestInfo`].

use std::borrow::Cow;

use http::Method;

/// kube-apiserver's `request.RequestInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// False for non-resource URLs such as `/healthz` or `/apis`.
    pub is_resource_request: bool,
    /// The URL path, without the query.
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, ...), or for non-resource
    /// requests the lower-cased HTTP method.
    pub verb: String,
    /// `api` or `apis` for resource requests.
    pub api_prefix: String,
    /// Empty for the core group.
    pub api_group: String,
    /// `v1`, `v1beta1`, ...
    pub api_version: String,
    /// Empty for cluster-scoped requests and requests across all namespaces.
    pub namespace: String,
    /// The resource (`pods`), not the kind.
    pub resource: String,
    /// `status`, `log`, `exec`, ...; empty when there is none.
    pub subresource: String,
    /// The object's name, from the path or (list and watch) a `metadata.name=` field selector.
    pub name: String,
    /// The path segments after the version (and after `namespaces/<ns>` for namespaced ones).
    pub parts: Vec<String>,
}

/// Path verbs of the deprecated `/{prefix}/{version}/{verb}/...` form (`specialVerbs`).
const PATH_VERBS: [&str; 2] = ["proxy", "watch"];

/// `namespaces/<ns>/<x>` with these `x` is a subresource of the namespace, not a resource in it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Verbs kube-apiserver treats as long-running (`pkg/controlplane/apiserver/config.go`,
/// `BuildGenericConfig`, the `BasicLongRunningRequestCheck` arguments).
const LONG_RUNNING_VERBS: [&str; 2] = ["watch", "proxy"];

/// Subresources kube-apiserver treats as long-running (same place as [`LONG_RUNNING_VERBS`]).
const LONG_RUNNING_SUBRESOURCES: [&str; 5] = ["attach", "exec", "proxy", "log", "portforward"];

/// Computes what kube-apiserver's `RequestInfoFactory.NewRequestInfo` computes for a request.
///
/// `path` is the raw (still percent-encoded) request path, `query` the raw query string
/// without the `?`. See the module documentation for how undecodable input is treated.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    let path = decode_path(path);
    let trimmed = path.trim_matches('/');
    let segment_count = if trimmed.is_empty() {
        0
    } else {
        trimmed.bytes().filter(|&b| b == b'/').count() + 1
    };
    let mut segments = trimmed.split('/');
    let mut info = RequestInfo {
        verb: method.as_str().to_ascii_lowercase(),
        ..RequestInfo::default()
    };

    // Resource requests are `/{prefix}/{version}/...` for the groupless prefix and
    // `/{prefix}/{group}/{version}/...` otherwise, each with at least one more segment.
    let prefix = segments.next().unwrap_or_default();
    let grouped = match prefix {
        "api" => false,
        "apis" => true,
        _ => return info.with_path(path),
    };
    if segment_count < 3 {
        return info.with_path(path);
    }
    // Go records the prefix before finding a grouped path too short (`/apis/g/v1`).
    info.api_prefix = prefix.to_owned();
    if grouped && segment_count < 4 {
        return info.with_path(path);
    }
    info.is_resource_request = true;
    if grouped {
        info.api_group = segments.next().unwrap_or_default().to_owned();
    }
    info.api_version = segments.next().unwrap_or_default().to_owned();

    let mut rest = segments.peekable();
    let first = rest.peek().copied().unwrap_or_default();
    let verb_from_path = PATH_VERBS.contains(&first);
    if verb_from_path {
        rest.next();
        if rest.peek().is_none() {
            // Go returns an error here, with what it knew so far.
            return info.with_path(path);
        }
        info.verb = first.to_owned();
    } else {
        info.verb = verb_for_method(method).to_owned();
    }
    let mut parts: Vec<String> = rest.map(str::to_owned).collect();

    if parts[0] == "namespaces" && parts.len() > 1 {
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2].as_str()) {
            // `namespaces/<ns>/<resource>/...`: the parts start at the resource.
            let mut namespace_segments = parts.drain(..2);
            info.namespace = namespace_segments.nth(1).unwrap_or_default();
        } else {
            // The namespace itself (`namespaces/<ns>[/status|/finalize]`).
            info.namespace = parts[1].clone();
        }
    }

    // parts: resource/name/subresource/anything-else; `proxy` path verbs have no subresource.
    if parts.len() >= 3 && info.verb != "proxy" {
        info.subresource = parts[2].clone();
    }
    if parts.len() >= 2 {
        info.name = parts[1].clone();
    }
    info.resource = parts[0].clone();
    info.parts = parts;

    if info.name.is_empty() && info.verb == "get" {
        let list = ListOptionsQuery::scan(query.unwrap_or_default());
        let decoded = list.decode();
        info.verb = if list.watch(decoded.is_some()) {
            "watch"
        } else {
            "list"
        }
        .to_owned();
        if let Some(Some(name)) = decoded {
            if is_path_segment_name(&name) {
                info.name = name.into_owned();
            }
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }
    info.with_path(path)
}

/// kube-apiserver's long-running check: a `watch` or `proxy` verb, an `attach`, `exec`,
/// `proxy`, `log` or `portforward` subresource, or a non-resource `/debug/pprof/...` path
/// (`staging/src/k8s.io/apiserver/pkg/server/filters/longrunning.go`,
/// `BasicLongRunningRequestCheck`, with the sets `pkg/controlplane/apiserver/config.go` passes).
///
/// The verb test applies to non-resource requests too, whose verb is the lower-cased method.
pub fn is_long_running(info: &RequestInfo) -> bool {
    if LONG_RUNNING_VERBS.contains(&info.verb.as_str()) {
        return true;
    }
    if info.is_resource_request {
        LONG_RUNNING_SUBRESOURCES.contains(&info.subresource.as_str())
    } else {
        info.path.starts_with("/debug/pprof/")
    }
}

impl RequestInfo {
    fn with_path(mut self, path: Cow<'_, str>) -> Self {
        self.path = path.into_owned();
        self
    }
}

/// The verb for a resource request's HTTP method; methods are matched case-sensitively, as Go does.
fn verb_for_method(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// Go's `URL.Path`: the path percent-decoded (`+` kept). A malformed escape leaves it undecoded.
fn decode_path(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') || !escapes_well_formed(raw) {
        return Cow::Borrowed(raw);
    }
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
}

/// Every `%` is followed by two hex digits (Go's `url.unescape` fails otherwise).
fn escapes_well_formed(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !hex(i + 1) || !hex(i + 2) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; `None` for a malformed escape.
fn query_unescape(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains(['%', '+']) {
        return Some(Cow::Borrowed(s));
    }
    if !escapes_well_formed(s) {
        return None;
    }
    let spaced = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
    Some(Cow::Owned(decoded.into_owned()))
}

/// The first value of each query parameter that decides the list/watch verb and the name of
/// a list or watch, read the way Go's `url.ParseQuery` reads them: pairs split on `&`, a
/// pair containing `;` or with a malformed escape in its key or value skipped.
#[derive(Default)]
struct ListOptionsQuery<'q> {
    watch: Option<Cow<'q, str>>,
    field_selector: Option<Cow<'q, str>>,
    label_selector: Option<Cow<'q, str>>,
    timeout_seconds: Option<Cow<'q, str>>,
    limit: Option<Cow<'q, str>>,
}

impl<'q> ListOptionsQuery<'q> {
    fn scan(query: &'q str) -> Self {
        let mut found = Self::default();
        for pair in query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(key) = query_unescape(key) else {
                continue;
            };
            let slot = match key.as_ref() {
                "watch" => &mut found.watch,
                "fieldSelector" => &mut found.field_selector,
                "labelSelector" => &mut found.label_selector,
                "timeoutSeconds" => &mut found.timeout_seconds,
                "limit" => &mut found.limit,
                _ => continue,
            };
            if slot.is_none() {
                if let Some(value) = query_unescape(value) {
                    *slot = Some(value);
                }
            }
        }
        found
    }

    /// Decodes the parameters as `ParameterCodec.DecodeParameters` does into `ListOptions`:
    /// `None` when that fails (an integer parameter that is not an `int64`, a selector that
    /// does not parse), else the name a `metadata.name` field-selector term requires, if any.
    fn decode(&self) -> Option<Option<Cow<'_, str>>> {
        let is_int =
            |v: &Option<Cow<'_, str>>| v.as_deref().is_none_or(|v| v.parse::<i64>().is_ok());
        if !is_int(&self.timeout_seconds) || !is_int(&self.limit) {
            return None;
        }
        if !self.label_selector.as_deref().is_none_or(labels::parses) {
            return None;
        }
        self.field_selector
            .as_deref()
            .map_or(Some(None), |s| fields::exact_name(s).ok())
    }

    /// Any `watch` value but `0` and `false` (case-insensitively) means watch. A decoded
    /// `ListOptions` compares with `strings.EqualFold`, the fallback after a decode error with
    /// `strings.ToLower`; the two differ only for `ſ` (U+017F), which folds to `s`.
    fn watch(&self, decoded: bool) -> bool {
        let Some(value) = self.watch.as_deref() else {
            return false;
        };
        if value == "0" {
            return false;
        }
        let is_false = if decoded {
            let mut chars = value.chars().map(|c| if c == 'ſ' { 's' } else { c });
            "false"
                .chars()
                .all(|f| chars.next().is_some_and(|c| c.eq_ignore_ascii_case(&f)))
                && chars.next().is_none()
        } else {
            value.eq_ignore_ascii_case("false")
        };
        !is_false
    }
}

/// `content.IsPathSegmentName`: the name can be a path segment.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains(['/', '%'])
}

/// Field selectors (`k8s.io/apimachinery/pkg/fields`, `ParseSelector` and
/// `RequiresExactMatch`), as far as the request-info rule needs them.
mod fields {
    use std::borrow::Cow;

    /// The value the selector requires `metadata.name` to equal, if any; `Err` when the
    /// selector does not parse.
    ///
    /// Terms are split on unescaped commas, then each splits at its first `!=`, `==` or `=`;
    /// values may escape `\\`, `\,` and `\=` and contain none of them unescaped. Go sorts the
    /// terms and takes the first `=`/`==` term on `metadata.name`: the smallest such raw term.
    pub(super) fn exact_name(selector: &str) -> Result<Option<Cow<'_, str>>, ()> {
        let mut best: Option<(&str, Cow<'_, str>)> = None;
        for term in split_terms(selector) {
            if term.is_empty() {
                continue;
            }
            let (field, negated, raw_value) = split_term(term).ok_or(())?;
            let value = unescape(raw_value)?;
            if field == "metadata.name" && !negated && best.as_ref().is_none_or(|(t, _)| term < *t)
            {
                best = Some((term, value));
            }
        }
        Ok(best.map(|(_, value)| value))
    }

    /// The terms between commas not escaped by a backslash (escapes kept).
    fn split_terms(selector: &str) -> impl Iterator<Item = &str> {
        let mut escaped = false;
        selector.split(move |c| {
            let split = !escaped && c == ',';
            escaped = !escaped && c == '\\';
            split
        })
    }

    /// `(field, is '!=', raw value)` split at the first operator.
    fn split_term(term: &str) -> Option<(&str, bool, &str)> {
        let bytes = term.as_bytes();
        let i = bytes
            .iter()
            .enumerate()
            .position(|(i, &b)| b == b'=' || (b == b'!' && bytes.get(i + 1) == Some(&b'=')))?;
        let (field, rest) = term.split_at(i);
        if let Some(value) = rest.strip_prefix("!=") {
            Some((field, true, value))
        } else {
            Some((field, false, rest.strip_prefix("==").unwrap_or(&rest[1..])))
        }
    }

    /// Removes the backslash from `\\`, `\,` and `\=`; any other escape, a lone trailing
    /// backslash, or an unescaped `,` or `=` is an error.
    fn unescape(value: &str) -> Result<Cow<'_, str>, ()> {
        if !value.contains(['\\', ',', '=']) {
            return Ok(Cow::Borrowed(value));
        }
        let mut out = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('\\' | ',' | '=')) => out.push(e),
                    _ => return Err(()),
                },
                ',' | '=' => return Err(()),
                c => out.push(c),
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// Label selectors (`k8s.io/apimachinery/pkg/labels`, `Parse`): only whether one parses,
/// which decides whether `ListOptions` decodes.
mod labels {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Token {
        End,
        Ident,
        In,
        NotIn,
        Not,
        Equals,
        DoubleEquals,
        NotEquals,
        GreaterThan,
        LessThan,
        OpenPar,
        ClosePar,
        Comma,
    }

    /// The lexer works on bytes. A NUL byte reads as the end of input wherever a token may
    /// start, and ends an identifier or operator (consumed), as in Go's lexer.
    struct Lexer<'a> {
        s: &'a [u8],
        pos: usize,
        peeked: Option<(Token, &'a [u8])>,
    }

    fn is_whitespace(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\r' | b'\n')
    }

    fn is_special(b: u8) -> bool {
        matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
    }

    impl<'a> Lexer<'a> {
        /// The next byte, or 0 at the end (where the position stays).
        fn read(&mut self) -> u8 {
            let b = self.s.get(self.pos).copied().unwrap_or(0);
            if self.pos < self.s.len() {
                self.pos += 1;
            }
            b
        }

        fn lex(&mut self) -> (Token, &'a [u8]) {
            let mut b = self.read();
            while is_whitespace(b) {
                b = self.read();
            }
            if b == 0 {
                return (Token::End, &[]);
            }
            if is_special(b) {
                return (self.operator(b), &[]);
            }
            let start = self.pos - 1;
            loop {
                let b = self.read();
                if b == 0 {
                    // A NUL is consumed; the end of input is not.
                    let end = if self.s.get(self.pos - 1) == Some(&0) {
                        self.pos - 1
                    } else {
                        self.pos
                    };
                    return Self::word(&self.s[start..end.max(start)]);
                }
                if is_special(b) || is_whitespace(b) {
                    self.pos -= 1;
                    return Self::word(&self.s[start..self.pos]);
                }
            }
        }

        fn word(w: &'a [u8]) -> (Token, &'a [u8]) {
            let token = match w {
                b"in" => Token::In,
                b"notin" => Token::NotIn,
                _ => Token::Ident,
            };
            (token, w)
        }

        /// The longest operator starting with `first`: `!=` and `==` are the two-byte ones.
        fn operator(&mut self, first: u8) -> Token {
            let single = match first {
                b'=' => Token::Equals,
                b'!' => Token::Not,
                b'(' => Token::OpenPar,
                b')' => Token::ClosePar,
                b',' => Token::Comma,
                b'>' => Token::GreaterThan,
                _ => Token::LessThan,
            };
            let second = self.read();
            if second == 0 {
                return single;
            }
            let double = match (first, second) {
                (b'=', b'=') => Token::DoubleEquals,
                (b'!', b'=') => Token::NotEquals,
                _ => {
                    self.pos -= 1;
                    return single;
                }
            };
            if self.read() != 0 {
                self.pos -= 1;
            }
            double
        }

        /// The next token where a value may stand: `in` and `notin` are plain identifiers there.
        fn next_value(&mut self) -> (Token, &'a [u8]) {
            let (token, lit) = self.next_raw();
            (as_value(token), lit)
        }

        fn peek_value(&mut self) -> Token {
            if self.peeked.is_none() {
                self.peeked = Some(self.lex());
            }
            self.peeked.map_or(Token::End, |(t, _)| as_value(t))
        }

        fn next_raw(&mut self) -> (Token, &'a [u8]) {
            self.peeked.take().unwrap_or_else(|| self.lex())
        }
    }

    fn as_value(token: Token) -> Token {
        match token {
            Token::In | Token::NotIn => Token::Ident,
            t => t,
        }
    }

    /// Whether `labels.Parse` accepts the selector.
    pub(super) fn parses(selector: &str) -> bool {
        let mut lexer = Lexer {
            s: selector.as_bytes(),
            pos: 0,
            peeked: None,
        };
        selector_ok(&mut lexer).is_some()
    }

    fn selector_ok(l: &mut Lexer<'_>) -> Option<()> {
        loop {
            match l.peek_value() {
                Token::End => return Some(()),
                Token::Ident | Token::Not => {
                    requirement_ok(l)?;
                    match l.next_value().0 {
                        Token::End => return Some(()),
                        Token::Comma if matches!(l.peek_value(), Token::Ident | Token::Not) => {}
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// `[!]key`, or `key op value`, or `key in|notin (values)`, with the key a valid label
    /// key and every value a valid label value (and an integer for `>` and `<`).
    fn requirement_ok(l: &mut Lexer<'_>) -> Option<()> {
        let (mut token, mut key) = l.next_value();
        let negated = token == Token::Not;
        if negated {
            (token, key) = l.next_value();
        }
        if token != Token::Ident || !is_label_key(key) {
            return None;
        }
        if negated || matches!(l.peek_value(), Token::End | Token::Comma) {
            return Some(());
        }
        match l.next_raw().0 {
            Token::In | Token::NotIn => values_ok(l),
            Token::Equals | Token::DoubleEquals | Token::NotEquals => {
                exact_value(l).filter(|v| is_label_value(v)).map(drop)
            }
            Token::GreaterThan | Token::LessThan => exact_value(l)
                .filter(|v| {
                    is_label_value(v)
                        && std::str::from_utf8(v).is_ok_and(|v| v.parse::<i64>().is_ok())
                })
                .map(drop),
            _ => None,
        }
    }

    /// A single value, empty when the requirement ends right after the operator.
    fn exact_value<'a>(l: &mut Lexer<'a>) -> Option<&'a [u8]> {
        if matches!(l.peek_value(), Token::End | Token::Comma) {
            return Some(b"");
        }
        match l.next_value() {
            (Token::Ident, v) => Some(v),
            _ => None,
        }
    }

    /// `( v1, v2, ... )`, where values may be empty (`()`, `(,a)`, `(a,,b)`).
    fn values_ok(l: &mut Lexer<'_>) -> Option<()> {
        if l.next_value().0 != Token::OpenPar {
            return None;
        }
        match l.peek_value() {
            Token::ClosePar => {
                l.next_value();
                return Some(());
            }
            Token::Ident | Token::Comma => {}
            _ => return None,
        }
        loop {
            match l.next_value() {
                (Token::Ident, v) => {
                    if !is_label_value(v) {
                        return None;
                    }
                    match l.peek_value() {
                        Token::Comma => {}
                        Token::ClosePar => break,
                        _ => return None,
                    }
                }
                (Token::Comma, _) => {
                    if l.peek_value() == Token::ClosePar {
                        break;
                    }
                }
                _ => return None,
            }
        }
        l.next_value();
        Some(())
    }

    /// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` (label key names, label values).
    fn is_label_name(s: &[u8]) -> bool {
        match (s.first(), s.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && s.iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            }
            _ => false,
        }
    }

    /// `content.IsLabelValue`: empty, or a label name of at most 63 bytes.
    fn is_label_value(s: &[u8]) -> bool {
        s.is_empty() || (s.len() <= 63 && is_label_name(s))
    }

    /// `content.IsLabelKey`: `[prefix/]name`, the prefix a DNS-1123 subdomain of at most 253
    /// bytes, the name a label name of at most 63.
    fn is_label_key(key: &[u8]) -> bool {
        let mut pieces = key.split(|&b| b == b'/');
        let (prefix, name) = match (pieces.next(), pieces.next(), pieces.next()) {
            (Some(name), None, _) => (None, name),
            (Some(prefix), Some(name), None) => (Some(prefix), name),
            _ => return false,
        };
        let prefix_ok = prefix.is_none_or(|p| {
            p.len() <= 253
                && p.split(|&b| b == b'.').all(|label| {
                    matches!((label.first(), label.last()), (Some(f), Some(l)) if is_lower_alnum(*f) && is_lower_alnum(*l))
                        && label.iter().all(|&b| is_lower_alnum(b) || b == b'-')
                })
        });
        prefix_ok && name.len() <= 63 && is_label_name(name)
    }

    fn is_lower_alnum(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    }
}

#[cfg(test)]
mod tests {
    //! Golden tables re-created from kube-apiserver's own tests and checked against
    //! k8s.io/apiserver v0.36.1 (Kubernetes v1.36.1):
    //! `staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo_test.go`.

    use super::*;

    fn parse_url(method: &str, url: &str) -> RequestInfo {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        parse(&method, path, query)
    }

    /// verb, api prefix, api group, api version, namespace, resource, subresource, name, parts.
    type Expect = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    );

    fn expected(is_resource_request: bool, path: &str, fields: Expect) -> RequestInfo {
        let (
            verb,
            api_prefix,
            api_group,
            api_version,
            namespace,
            resource,
            subresource,
            name,
            parts,
        ) = fields;
        RequestInfo {
            is_resource_request,
            path: path.to_owned(),
            verb: verb.to_owned(),
            api_prefix: api_prefix.to_owned(),
            api_group: api_group.to_owned(),
            api_version: api_version.to_owned(),
            namespace: namespace.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            parts: parts.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// `TestGetAPIRequestInfo`, success cases. Go's table has `api` in its (unchecked)
    /// prefix column for the `/apis/...` rows; the real prefix, `apis`, is asserted here.
    #[rustfmt::skip]
    const GET_API_REQUEST_INFO: &[(&str, &str, Expect)] = &[
        ("GET", "/api/v1/namespaces", ("list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"])),
        ("GET", "/api/v1/namespaces/other", ("get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"])),
        ("GET", "/api/v1/namespaces/other/pods", ("list", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/other/pods/foo", ("get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("HEAD", "/api/v1/namespaces/other/pods/foo", ("get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("GET", "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("HEAD", "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/other/pods/foo", ("get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("GET", "/api/v1/namespaces/other/pods", ("list", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/proxy/namespaces/other/pods/foo", ("proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", ("proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"])),
        ("GET", "/api/v1/watch/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=true", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=false", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/watch/namespaces/other/pods", ("watch", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/other/pods?watch=1", ("watch", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/other/pods?watch=0", ("list", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/other/pods/foo/status", ("get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"])),
        ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", ("get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"])),
        ("PUT", "/api/v1/namespaces/other/finalize", ("update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"])),
        ("PUT", "/api/v1/namespaces/other/status", ("update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"])),
        ("PATCH", "/api/v1/namespaces/other/pods/foo", ("patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("DELETE", "/api/v1/namespaces/other/pods/foo", ("delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"])),
        ("POST", "/api/v1/namespaces/other/pods", ("create", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("DELETE", "/api/v1/nodes", ("deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"])),
        ("DELETE", "/api/v1/namespaces", ("deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"])),
        ("DELETE", "/api/v1/namespaces/other/pods", ("deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"])),
        ("DELETE", "/apis/extensions/v1/namespaces/other/pods", ("deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"])),
        ("POST", "/apis/extensions/v1/namespaces/other/pods", ("create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"])),
        ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", ("create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"])),
    ];

    #[test]
    fn get_api_request_info() {
        for &(method, url, fields) in GET_API_REQUEST_INFO {
            let want = expected(true, url.split('?').next().unwrap_or_default(), fields);
            assert_eq!(parse_url(method, url), want, "{method} {url}");
        }
    }

    /// `TestGetAPIRequestInfo`, error cases: all non-resource requests.
    #[rustfmt::skip]
    const GET_API_REQUEST_INFO_NON_RESOURCE: &[(&str, &str)] = &[
        ("no resource path", "/"),
        ("just apiversion", "/api/version/"),
        ("just prefix, group, version", "/apis/group/version/"),
        ("apiversion with no resource", "/api/version/"),
        ("bad prefix", "/badprefix/version/resource"),
        ("missing api group", "/apis/version/resource"),
    ];

    #[test]
    fn get_api_request_info_non_resource() {
        for &(case, url) in GET_API_REQUEST_INFO_NON_RESOURCE {
            let info = parse_url("GET", url);
            assert!(!info.is_resource_request, "{case}: {url}");
            assert_eq!(info.verb, "get", "{case}: {url}");
            assert_eq!(info.path, url, "{case}: {url}");
            assert!(
                info.parts.is_empty() && info.resource.is_empty(),
                "{case}: {url}"
            );
        }
    }

    /// `TestGetNonAPIRequestInfo`: case, url, is a resource request.
    #[rustfmt::skip]
    const GET_NON_API_REQUEST_INFO: &[(&str, &str, bool)] = &[
        ("simple groupless", "/api/version/resource", true),
        ("simple group", "/apis/group/version/resource/name/subresource", true),
        ("more steps", "/api/version/resource/name/subresource", true),
        ("group list", "/apis/batch/v1/job", true),
        ("group get", "/apis/batch/v1/job/foo", true),
        ("group subresource", "/apis/batch/v1/job/foo/scale", true),
        ("bad root", "/not-api/version/resource", false),
        ("group without enough steps", "/apis/extensions/v1beta1", false),
        ("group without enough steps 2", "/apis/extensions/v1beta1/", false),
        ("not enough steps", "/api/version", false),
        ("one step", "/api", false),
        ("zero step", "/", false),
        ("empty", "", false),
    ];

    #[test]
    fn get_non_api_request_info() {
        for &(case, url, resource) in GET_NON_API_REQUEST_INFO {
            assert_eq!(
                parse_url("GET", url).is_resource_request,
                resource,
                "{case}: {url}"
            );
        }
    }

    /// `TestSelectorParsing`: case, method, url, name, verb. Go's `FieldSelector` and
    /// `LabelSelector` columns have no counterpart in [`RequestInfo`].
    #[rustfmt::skip]
    const SELECTOR_PARSING: &[(&str, &str, &str, &str, &str)] = &[
        ("no selector", "GET", "/apis/group/version/resource", "", "list"),
        ("metadata.name selector", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
        ("metadata.name selector with watch", "GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch"),
        ("random selector", "GET", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "list"),
        ("invalid selector with metadata.name", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
        ("invalid selector with metadata.name with watch", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch"),
        ("invalid selector with metadata.name with watch false", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list"),
        ("selector on deletecollection is honored", "DELETE", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "deletecollection"),
        ("selector on repeated param matches parsed param", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz", "foo", "list"),
        ("selector on other verb is ignored", "GET", "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar", "name", "get"),
        ("selector on deprecated root type watch is not parsed", "GET", "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "", "watch"),
        ("selector on deprecated root item watch is not parsed", "GET", "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "name", "watch"),
    ];

    #[test]
    fn selector_parsing() {
        for &(case, method, url, name, verb) in SELECTOR_PARSING {
            let info = parse_url(method, url);
            assert_eq!(
                (info.name.as_str(), info.verb.as_str()),
                (name, verb),
                "{case}: {url}"
            );
        }
    }

    /// Edge cases beyond Go's tables (percent-encoding, slashes, the `watch` value, path
    /// verbs without a resource, field-selector terms, `ListOptions` that fail to decode),
    /// each row as `NewRequestInfo` of v0.36.1 returns it for a request Go's server parsed.
    #[rustfmt::skip]
    const EDGE_CASES: &[(&str, &str, bool, &str, Expect)] = &[
        ("GET", "/api/v1/namespaces/ns%2Fx/pods", true, "/api/v1/namespaces/ns/x/pods", ("get", "api", "", "v1", "ns", "x", "", "pods", &["x", "pods"])),
        ("GET", "/api/v1/p%6Fds/a%20b", true, "/api/v1/pods/a b", ("get", "api", "", "v1", "", "pods", "", "a b", &["pods", "a b"])),
        ("GET", "/api/v1/pods/a+b", true, "/api/v1/pods/a+b", ("get", "api", "", "v1", "", "pods", "", "a+b", &["pods", "a+b"])),
        ("GET", "/api%2Fv1%2Fpods", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods//", true, "/api/v1/pods//", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api//v1/pods", true, "/api//v1/pods", ("get", "api", "", "", "", "v1", "", "pods", &["v1", "pods"])),
        ("GET", "//api/v1/pods", true, "//api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1//pods", true, "/api/v1//pods", ("get", "api", "", "v1", "", "", "", "pods", &["", "pods"])),
        ("GET", "/api/v1/watch", true, "/api/v1/watch", ("get", "api", "", "v1", "", "", "", "", &[])),
        ("GET", "/api/v1/watch/", true, "/api/v1/watch/", ("get", "api", "", "v1", "", "", "", "", &[])),
        ("POST", "/apis/g/v1/proxy", true, "/apis/g/v1/proxy", ("post", "apis", "g", "v1", "", "", "", "", &[])),
        ("GET", "/apis/g/v1", false, "/apis/g/v1", ("get", "apis", "", "", "", "", "", "", &[])),
        ("GET", "/apis/g/v1/", false, "/apis/g/v1/", ("get", "apis", "", "", "", "", "", "", &[])),
        ("OPTIONS", "/api/v1/namespaces/ns/pods/foo", true, "/api/v1/namespaces/ns/pods/foo", ("", "api", "", "v1", "ns", "pods", "", "foo", &["pods", "foo"])),
        ("OPTIONS", "/api/v1/namespaces/ns/pods", true, "/api/v1/namespaces/ns/pods", ("", "api", "", "v1", "ns", "pods", "", "", &["pods"])),
        ("CONNECT", "/healthz", false, "/healthz", ("connect", "", "", "", "", "", "", "", &[])),
        ("get", "/api/v1/pods/foo", true, "/api/v1/pods/foo", ("", "api", "", "v1", "", "pods", "", "foo", &["pods", "foo"])),
        ("GET", "/api/v1/namespaces", true, "/api/v1/namespaces", ("list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"])),
        ("GET", "/api/v1/namespaces/", true, "/api/v1/namespaces/", ("list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"])),
        ("GET", "/api/v1/namespaces/ns/finalize/x", true, "/api/v1/namespaces/ns/finalize/x", ("get", "api", "", "v1", "ns", "namespaces", "finalize", "ns", &["namespaces", "ns", "finalize", "x"])),
        ("GET", "/api/v1/namespaces/status/pods", true, "/api/v1/namespaces/status/pods", ("list", "api", "", "v1", "status", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/watch/namespaces", true, "/api/v1/watch/namespaces", ("watch", "api", "", "v1", "", "namespaces", "", "", &["namespaces"])),
        ("GET", "/api/v1/watch/namespaces/ns", true, "/api/v1/watch/namespaces/ns", ("watch", "api", "", "v1", "ns", "namespaces", "", "ns", &["namespaces", "ns"])),
        ("GET", "/api/v1/watch/namespaces/ns/pods/foo", true, "/api/v1/watch/namespaces/ns/pods/foo", ("watch", "api", "", "v1", "ns", "pods", "", "foo", &["pods", "foo"])),
        ("GET", "/api/v1/proxy/pods", true, "/api/v1/proxy/pods", ("proxy", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/namespaces/ns/services/foo:80/proxy/a/b", true, "/api/v1/namespaces/ns/services/foo:80/proxy/a/b", ("get", "api", "", "v1", "ns", "services", "proxy", "foo:80", &["services", "foo:80", "proxy", "a", "b"])),
        ("GET", "/api/v1/pods?watch=", true, "/api/v1/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch", true, "/api/v1/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=FALSE", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=%66alse", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=false&watch=true", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch;x=1&watch=false", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=%zz&watch=0", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=falſe", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?watch=falſe&limit=x", true, "/api/v1/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("HEAD", "/api/v1/pods?watch=yes", true, "/api/v1/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dfoo", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "foo", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name==foo", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "foo", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name!=foo", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=b,metadata.name=a", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "a", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a%5C,b", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "a,b", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a%5C%5C", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "a\\", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a%5C", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a%5Cx", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=..", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a%25b", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a/b", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=,,metadata.name=x,", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "x", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=spec.nodeName=n,metadata.name=z", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "z", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=a+b", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "a b", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&labelSelector=a+in+(b", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&labelSelector=a+in+(b,,c)", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "foo", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&limit=x", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&limit=-1", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "foo", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&timeoutSeconds=1.5&watch=1", true, "/api/v1/pods", ("watch", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo&continue=x&resourceVersion=abc&sendInitialEvents=maybe", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "foo", &["pods"])),
        ("GET", "/api/v1/pods?fieldSelector=metadata.name=foo;x", true, "/api/v1/pods", ("list", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("DELETE", "/api/v1/pods?fieldSelector=metadata.name=foo", true, "/api/v1/pods", ("deletecollection", "api", "", "v1", "", "pods", "", "", &["pods"])),
        ("GET", "/api/v1/pods/foo?watch=true", true, "/api/v1/pods/foo", ("get", "api", "", "v1", "", "pods", "", "foo", &["pods", "foo"])),
    ];

    #[test]
    fn edge_cases_match_kube_apiserver() {
        for &(method, url, resource_request, path, fields) in EDGE_CASES {
            assert_eq!(
                parse_url(method, url),
                expected(resource_request, path, fields),
                "{method} {url}"
            );
        }
    }

    #[test]
    fn malformed_path_escapes_are_parsed_undecoded() {
        let info = parse_url("GET", "/api/v1/namespaces/a%zz/pods/b%");
        assert_eq!(info.path, "/api/v1/namespaces/a%zz/pods/b%");
        assert_eq!(
            (info.namespace.as_str(), info.name.as_str()),
            ("a%zz", "b%")
        );
        assert_eq!(parse_url("GET", "/api/v1/pods/%FF").name, "\u{fffd}");
    }

    /// `labels.Parse` acceptance, as seen through the name rule (a selector that does not
    /// parse makes `ListOptions` fail to decode).
    #[rustfmt::skip]
    const LABEL_SELECTORS: &[(&str, bool)] = &[
        ("", true),
        ("a", true),
        ("!a", true),
        ("a=b", true),
        ("a==b", true),
        ("a!=b", true),
        ("a in (b,c)", true),
        ("a notin ()", true),
        ("a in (,)", true),
        ("a in (b,,c)", true),
        ("a in (b", false),
        ("a in b", false),
        ("a in (b c)", false),
        ("a>5", true),
        ("a<-5", false),
        ("a>x", false),
        ("a>", false),
        ("a=", true),
        ("a,", false),
        (",a", false),
        ("a b", false),
        ("!a=b", false),
        ("!a,b", true),
        ("example.com/a=b", true),
        ("Example.com/a=b", false),
        ("a/b/c", false),
        ("/a", false),
        ("-a", false),
        ("a=-b", false),
        ("in in (in)", true),
        ("notin=notin", true),
        ("a\0b", false),
        ("a=b\0!!!", false),
        ("a!!b", false),
        ("a=!b", false),
        ("a=(b)", false),
        (" a = b ", true),
        ("a\t,\nb", true),
        ("a==xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", true),
        ("a==xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", false),
        ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", true),
        ("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", false),
        ("a.b-c_d=e.f-g_h", true),
        ("a=é", false),
        ("a in (b,)x", false),
        ("x,,y", false),
        ("a>01", true),
        ("a<+3", false),
        ("a in (é)", false),
    ];

    #[test]
    fn label_selector_parsing() {
        for &(selector, ok) in LABEL_SELECTORS {
            assert_eq!(labels::parses(selector), ok, "{selector:?}");
        }
    }

    /// method, url, long-running.
    #[rustfmt::skip]
    const LONG_RUNNING: &[(&str, &str, bool)] = &[
        ("POST", "/api/v1/namespaces/ns/pods/foo/exec?command=sh", true),
        ("GET", "/api/v1/namespaces/ns/pods/foo/exec", true),
        ("POST", "/api/v1/namespaces/ns/pods/foo/attach", true),
        ("POST", "/api/v1/namespaces/ns/pods/foo/portforward", true),
        ("GET", "/api/v1/namespaces/ns/pods/foo/proxy/metrics", true),
        ("GET", "/api/v1/namespaces/ns/services/foo:80/proxy/", true),
        ("GET", "/api/v1/nodes/n/proxy/logs/", true),
        ("GET", "/api/v1/proxy/namespaces/ns/pods/foo", true),
        ("GET", "/api/v1/namespaces/ns/pods/foo/log?follow=true", true),
        ("GET", "/api/v1/namespaces/ns/pods/foo/log", true),
        ("GET", "/api/v1/pods?watch=true", true),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments?watch=1", true),
        ("GET", "/api/v1/watch/pods", true),
        ("GET", "/api/v1/watch/namespaces/ns/pods/foo", true),
        ("GET", "/debug/pprof/profile?seconds=30", true),
        ("WATCH", "/healthz", true),
        ("GET", "/api/v1/namespaces/ns/pods/foo", false),
        ("GET", "/api/v1/pods", false),
        ("GET", "/api/v1/pods?watch=false", false),
        ("GET", "/api/v1/pods/foo?watch=true", false),
        ("GET", "/api/v1/namespaces/ns/pods/foo/status", false),
        ("POST", "/api/v1/namespaces/ns/pods/foo/eviction", false),
        ("GET", "/logs/kube-apiserver.log", false),
        ("GET", "/api/v1/log", false),
        ("GET", "/debug/pprof", false),
        ("GET", "/healthz", false),
        ("GET", "/api/v1/watch", false),
    ];

    #[test]
    fn long_running() {
        for &(method, url, want) in LONG_RUNNING {
            assert_eq!(
                is_long_running(&parse_url(method, url)),
                want,
                "{method} {url}"
            );
        }
    }
}
