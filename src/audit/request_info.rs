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
