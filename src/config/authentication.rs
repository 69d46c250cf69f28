//! `--authentication-config FILE`: kube-apiserver's structured authentication configuration
//! (`AuthenticationConfiguration` of `apiserver.config.k8s.io/v1` or `/v1beta1`), decoded as
//! strictly as kube-apiserver decodes it (unknown fields and duplicate keys are errors) and
//! validated by its rules (`pkg/apis/apiserver/validation/validation.go`, k8s-semantics §2.2).
//! Every problem is reported at once, each naming its field path in kube's words
//! (`jwt[0].issuer.url: Invalid value: "http://x": URL scheme must be https`).
//!
//! Deliberate differences from kube-apiserver (docs/compatibility.md):
//! - at least one `jwt` authenticator is required (a proxy without one admits nobody);
//! - `anonymous.enabled: true` is refused (the proxy never serves anonymous requests);
//!   `enabled: false` is accepted;
//! - `issuer.egressSelectorType` is refused (the proxy has no egress selector);
//! - there are no disallowed issuers (kube's `--service-account-issuer` list);
//! - CEL expressions are checked by [`crate::authn::cel::compile`], which has no type checker.
//!
//! The result is the same [`JwtConfig`] the `--oidc-*` flags produce, with kube's nine
//! signing algorithms (`oidc.AllValidSigningAlgorithms()`).

use std::collections::HashSet;

use serde::Deserialize;

use crate::authn::cel::{self, CompileError, Expression, ResultKind, Variable};
use crate::authn::claims::{PrefixedClaim, RequiredClaim};
use crate::authn::issuer::{parse_certificate_authority, IssuerSettings};
use crate::authn::jws::KUBERNETES_ALGORITHMS;
use crate::authn::mapping::{
    ClaimMappings, ClaimValidationRule, ExtraMapping, GroupsMapping, UidMapping,
    UserValidationRule, UsernameMapping,
};
use crate::authn::oidc::JwtConfig;

/// The API group and versions accepted (`v1alpha1` is not).
pub const API_VERSIONS: [&str; 2] = [
    "apiserver.config.k8s.io/v1",
    "apiserver.config.k8s.io/v1beta1",
];
/// The only kind.
pub const KIND: &str = "AuthenticationConfiguration";
/// kube-apiserver accepts at most this many `jwt` authenticators.
pub const MAX_AUTHENTICATORS: usize = 64;

// ---- the file, as written (field names and strictness as kube decodes it) ----------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthenticationConfiguration {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    jwt: Vec<JwtAuthenticatorFile>,
    #[serde(default)]
    anonymous: Option<AnonymousFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtAuthenticatorFile {
    #[serde(default)]
    issuer: IssuerFile,
    #[serde(default)]
    claim_validation_rules: Vec<ClaimValidationRuleFile>,
    #[serde(default)]
    claim_mappings: ClaimMappingsFile,
    #[serde(default)]
    user_validation_rules: Vec<UserValidationRuleFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerFile {
    #[serde(default)]
    url: String,
    #[serde(default, rename = "discoveryURL")]
    discovery_url: String,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    audience_match_policy: String,
    #[serde(default)]
    egress_selector_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimValidationRuleFile {
    #[serde(default)]
    claim: String,
    #[serde(default)]
    required_value: String,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimMappingsFile {
    #[serde(default)]
    username: PrefixedClaimOrExpressionFile,
    #[serde(default)]
    groups: PrefixedClaimOrExpressionFile,
    #[serde(default)]
    uid: ClaimOrExpressionFile,
    #[serde(default)]
    extra: Vec<ExtraMappingFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrefixedClaimOrExpressionFile {
    #[serde(default)]
    claim: String,
    /// Absent and `""` differ: a claim needs a prefix, which may be empty.
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    expression: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimOrExpressionFile {
    #[serde(default)]
    claim: String,
    #[serde(default)]
    expression: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtraMappingFile {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value_expression: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserValidationRuleFile {
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnonymousFile {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    conditions: Vec<AnonymousConditionFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnonymousConditionFile {
    #[serde(default)]
    #[allow(dead_code)]
    path: String,
}

// ---- errors in kube's `field.Error` words ---------------------------------------------

/// Collects errors as kube-apiserver's `field.ErrorList` prints them (also used by
/// [`crate::audit::policy`]).
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<String>);

impl Errors {
    pub(crate) fn required(&mut self, path: &str, detail: &str) {
        self.0.push(if detail.is_empty() {
            format!("{path}: Required value")
        } else {
            format!("{path}: Required value: {detail}")
        });
    }

    pub(crate) fn invalid(&mut self, path: &str, value: &str, detail: &str) {
        self.0
            .push(format!("{path}: Invalid value: {value:?}: {detail}"));
    }

    pub(crate) fn duplicate(&mut self, path: &str, value: &str) {
        self.0.push(format!("{path}: Duplicate value: {value:?}"));
    }

    pub(crate) fn unsupported(&mut self, path: &str, value: &str, detail: &str) {
        self.0
            .push(format!("{path}: Unsupported value: {value:?}: {detail}"));
    }

    fn compile(
        &mut self,
        path: &str,
        source: &str,
        variable: Variable,
        result: ResultKind,
    ) -> Option<Expression> {
        cel::compile(source, variable, result)
            .map_err(|error: CompileError| self.invalid(path, source, &error.to_string()))
            .ok()
    }
}

// ---- parsing and validation -------------------------------------------------------------

/// Decodes and validates an `AuthenticationConfiguration`; returns its authenticators, or every
/// problem found (each naming its field path).
pub fn parse(bytes: &[u8]) -> Result<Vec<JwtConfig>, Vec<String>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(vec!["the file is empty".to_owned()]);
    }
    let file: AuthenticationConfiguration =
        serde_saphyr::from_slice(bytes).map_err(|e| vec![e.to_string()])?;
    let mut errors = Errors::default();

    if !API_VERSIONS.contains(&file.api_version.as_str()) {
        errors.unsupported(
            "apiVersion",
            &file.api_version,
            &format!(
                "supported values: {}",
                API_VERSIONS.map(|v| format!("{v:?}")).join(", ")
            ),
        );
    }
    if file.kind != KIND {
        errors.unsupported("kind", &file.kind, &format!("supported values: {KIND:?}"));
    }
    if let Some(anonymous) = &file.anonymous {
        if anonymous.enabled {
            errors.unsupported(
                "anonymous.enabled",
                "true",
                "kube-oidc-proxy never serves anonymous requests; remove the section or set \
                 enabled: false",
            );
        } else if !anonymous.conditions.is_empty() {
            errors.invalid(
                "anonymous.conditions",
                &format!("{} condition(s)", anonymous.conditions.len()),
                "enabled should be set to true when conditions are defined",
            );
        }
    }

    if file.jwt.is_empty() {
        errors.required(
            "jwt",
            "at least one authenticator is required (the proxy admits no one without one)",
        );
    }
    if file.jwt.len() > MAX_AUTHENTICATORS {
        errors.0.push(format!(
            "jwt: Too many: {}: must have at most {MAX_AUTHENTICATORS} items",
            file.jwt.len()
        ));
        return Err(errors.0);
    }

    let mut seen_issuers = HashSet::new();
    let mut seen_discovery_urls = HashSet::new();
    let mut authenticators = Vec::with_capacity(file.jwt.len());
    for (i, jwt) in file.jwt.iter().enumerate() {
        let path = format!("jwt[{i}]");
        let config = validate_authenticator(jwt, &path, &mut errors);
        if !seen_issuers.insert(jwt.issuer.url.as_str()) {
            errors.duplicate(&format!("{path}.issuer.url"), &jwt.issuer.url);
        }
        if !jwt.issuer.discovery_url.is_empty()
            && !seen_discovery_urls.insert(jwt.issuer.discovery_url.as_str())
        {
            errors.duplicate(
                &format!("{path}.issuer.discoveryURL"),
                &jwt.issuer.discovery_url,
            );
        }
        authenticators.extend(config);
    }

    if errors.0.is_empty() {
        Ok(authenticators)
    } else {
        Err(errors.0)
    }
}

fn validate_authenticator(
    jwt: &JwtAuthenticatorFile,
    path: &str,
    errors: &mut Errors,
) -> Option<JwtConfig> {
    let before = errors.0.len();
    let issuer = validate_issuer(&jwt.issuer, &format!("{path}.issuer"), errors);
    let mut uses_email_verified = false;
    let claim_validation_rules = validate_claim_rules(
        &jwt.claim_validation_rules,
        &format!("{path}.claimValidationRules"),
        errors,
        &mut uses_email_verified,
    );
    let claim_mappings = validate_claim_mappings(
        &jwt.claim_mappings,
        &format!("{path}.claimMappings"),
        errors,
        uses_email_verified,
    );
    let user_validation_rules = validate_user_rules(
        &jwt.user_validation_rules,
        &format!("{path}.userValidationRules"),
        errors,
    );
    if errors.0.len() != before {
        return None;
    }
    Some(JwtConfig {
        audiences: jwt.issuer.audiences.clone(),
        issuer,
        algorithms: KUBERNETES_ALGORITHMS.to_vec(),
        claim_mappings: claim_mappings?,
        claim_validation_rules,
        user_validation_rules,
    })
}

fn validate_issuer(issuer: &IssuerFile, path: &str, errors: &mut Errors) -> IssuerSettings {
    let url_path = format!("{path}.url");
    if issuer.url.is_empty() {
        errors.required(&url_path, "");
    } else {
        validate_url(&issuer.url, &url_path, errors);
    }
    if !issuer.discovery_url.is_empty() {
        let discovery_path = format!("{path}.discoveryURL");
        if !issuer.url.is_empty()
            && issuer.url.trim_end_matches('/') == issuer.discovery_url.trim_end_matches('/')
        {
            errors.invalid(
                &discovery_path,
                &issuer.discovery_url,
                "discoveryURL must be different from URL",
            );
        }
        validate_url(&issuer.discovery_url, &discovery_path, errors);
    }

    let audiences_path = format!("{path}.audiences");
    let policy_path = format!("{path}.audienceMatchPolicy");
    if issuer.audiences.is_empty() {
        errors.required(
            &audiences_path,
            &format!("at least one {audiences_path} is required"),
        );
    } else {
        let mut seen = HashSet::new();
        for (i, audience) in issuer.audiences.iter().enumerate() {
            let path = format!("{audiences_path}[{i}]");
            if audience.is_empty() {
                errors.required(&path, "");
            }
            if !seen.insert(audience.as_str()) {
                errors.duplicate(&path, audience);
            }
        }
        let policy = issuer.audience_match_policy.as_str();
        if issuer.audiences.len() > 1 && policy != "MatchAny" {
            errors.invalid(
                &policy_path,
                policy,
                "audienceMatchPolicy must be MatchAny for multiple audiences",
            );
        }
        if issuer.audiences.len() == 1 && !policy.is_empty() && policy != "MatchAny" {
            errors.invalid(
                &policy_path,
                policy,
                "audienceMatchPolicy must be empty or MatchAny for single audience",
            );
        }
    }

    if !issuer.certificate_authority.is_empty() {
        if let Err(e) = parse_certificate_authority(&issuer.certificate_authority) {
            // kube never echoes the bundle.
            errors.0.push(format!(
                "{path}.certificateAuthority: Invalid value: \"<omitted>\": {e}"
            ));
        }
    }
    if !issuer.egress_selector_type.is_empty() {
        errors.unsupported(
            &format!("{path}.egressSelectorType"),
            &issuer.egress_selector_type,
            "kube-oidc-proxy has no egress selector; remove the field",
        );
    }

    IssuerSettings {
        url: issuer.url.clone(),
        discovery_url: Some(issuer.discovery_url.clone()).filter(|u| !u.is_empty()),
        certificate_authority: Some(issuer.certificate_authority.clone())
            .filter(|ca| !ca.is_empty()),
    }
}

/// kube's `validateURL`: parses, scheme `https`, no user info, no query, no fragment (and,
/// stricter, a host).
fn validate_url(url: &str, path: &str, errors: &mut Errors) {
    let (without_fragment, fragment) = match url.split_once('#') {
        Some((before, after)) => (before, Some(after)),
        None => (url, None),
    };
    let uri = match without_fragment.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            errors.invalid(path, url, &e.to_string());
            return;
        }
    };
    if uri.scheme_str() != Some("https") {
        errors.invalid(path, url, "URL scheme must be https");
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        errors.invalid(path, url, "URL must not contain a username or password");
    }
    if uri.host().unwrap_or_default().is_empty() {
        errors.invalid(path, url, "URL must have a host");
    }
    if uri.query().is_some_and(|q| !q.is_empty()) {
        errors.invalid(path, url, "URL must not contain a query");
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        errors.invalid(path, url, "URL must not contain a fragment");
    }
}

fn validate_claim_rules(
    rules: &[ClaimValidationRuleFile],
    path: &str,
    errors: &mut Errors,
    uses_email_verified: &mut bool,
) -> Vec<ClaimValidationRule> {
    let mut seen_claims = HashSet::new();
    let mut seen_expressions = HashSet::new();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{path}[{i}]");
        match (rule.claim.is_empty(), rule.expression.is_empty()) {
            (false, false) => {
                errors.invalid(&path, &rule.claim, "claim and expression can't both be set")
            }
            (true, true) => errors.required(&path, "claim or expression is required"),
            (false, true) => {
                if !rule.message.is_empty() {
                    errors.invalid(
                        &format!("{path}.message"),
                        &rule.message,
                        "may not be specified when claim is set",
                    );
                }
                if !seen_claims.insert(rule.claim.as_str()) {
                    errors.duplicate(&format!("{path}.claim"), &rule.claim);
                }
                out.push(ClaimValidationRule::Required(RequiredClaim {
                    claim: rule.claim.clone(),
                    value: rule.required_value.clone(),
                }));
            }
            (true, false) => {
                if !rule.required_value.is_empty() {
                    errors.invalid(
                        &format!("{path}.requiredValue"),
                        &rule.required_value,
                        "may not be specified when expression is set",
                    );
                }
                let expression_path = format!("{path}.expression");
                if !seen_expressions.insert(rule.expression.as_str()) {
                    errors.duplicate(&expression_path, &rule.expression);
                    continue;
                }
                if let Some(expression) = errors.compile(
                    &expression_path,
                    &rule.expression,
                    Variable::Claims,
                    ResultKind::Bool,
                ) {
                    *uses_email_verified |= expression.selects_claim("email_verified");
                    out.push(ClaimValidationRule::Expression {
                        expression,
                        message: rule.message.clone(),
                    });
                }
            }
        }
    }
    out
}

/// `username` (required) and `groups`: exactly one of `claim` and `expression`; `prefix` is
/// required with `claim` (it may be "") and forbidden with `expression`.
fn validate_prefixed(
    mapping: &PrefixedClaimOrExpressionFile,
    path: &str,
    required: bool,
    errors: &mut Errors,
) -> Option<Result<PrefixedClaim, Expression>> {
    match (mapping.claim.is_empty(), mapping.expression.is_empty()) {
        (false, false) => {
            errors.invalid(path, "", "claim and expression can't both be set");
            None
        }
        (true, true) => {
            if required {
                errors.required(path, "claim or expression is required");
            }
            None
        }
        (true, false) => {
            if let Some(prefix) = &mapping.prefix {
                errors.invalid(
                    &format!("{path}.prefix"),
                    prefix,
                    "may not be specified when expression is set",
                );
            }
            errors
                .compile(
                    &format!("{path}.expression"),
                    &mapping.expression,
                    Variable::Claims,
                    ResultKind::Any,
                )
                .map(Err)
        }
        (false, true) => match &mapping.prefix {
            None => {
                errors.required(
                    &format!("{path}.prefix"),
                    "prefix is required when claim is set. It can be set to an empty string \
                     to disable prefixing",
                );
                None
            }
            Some(prefix) => Some(Ok(PrefixedClaim {
                claim: mapping.claim.clone(),
                prefix: prefix.clone(),
            })),
        },
    }
}

fn validate_claim_mappings(
    mappings: &ClaimMappingsFile,
    path: &str,
    errors: &mut Errors,
    mut uses_email_verified: bool,
) -> Option<ClaimMappings> {
    let username_path = format!("{path}.username");
    let username = validate_prefixed(&mappings.username, &username_path, true, errors);
    let uses_email = matches!(&username, Some(Err(e)) if e.selects_claim("email"));
    if let Some(Err(expression)) = &username {
        uses_email_verified |= expression.selects_claim("email_verified");
    }
    let groups = validate_prefixed(&mappings.groups, &format!("{path}.groups"), false, errors);

    let uid_path = format!("{path}.uid");
    let uid = match (
        mappings.uid.claim.is_empty(),
        mappings.uid.expression.is_empty(),
    ) {
        (false, false) => {
            errors.invalid(&uid_path, "", "claim and expression can't both be set");
            None
        }
        (true, true) => None,
        (false, true) => Some(UidMapping::Claim(mappings.uid.claim.clone())),
        (true, false) => errors
            .compile(
                &format!("{uid_path}.expression"),
                &mappings.uid.expression,
                Variable::Claims,
                ResultKind::Any,
            )
            .map(UidMapping::Expression),
    };

    let mut seen_keys = HashSet::new();
    let mut extra = Vec::new();
    for (i, mapping) in mappings.extra.iter().enumerate() {
        let path = format!("{path}.extra[{i}]");
        let key_path = format!("{path}.key");
        validate_extra_key(&mapping.key, &key_path, errors);
        if !seen_keys.insert(mapping.key.as_str()) {
            errors.duplicate(&key_path, &mapping.key);
            continue;
        }
        if mapping.value_expression.is_empty() {
            errors.required(&format!("{path}.valueExpression"), "");
            continue;
        }
        if let Some(value) = errors.compile(
            &format!("{path}.valueExpression"),
            &mapping.value_expression,
            Variable::Claims,
            ResultKind::Any,
        ) {
            uses_email_verified |= value.selects_claim("email_verified");
            extra.push(ExtraMapping {
                key: mapping.key.clone(),
                value,
            });
        }
    }

    // kube: an expression username built from `claims.email` must look at
    // `claims.email_verified` somewhere (the plain-claim path checks it implicitly).
    if uses_email && !uses_email_verified {
        errors.invalid(
            &format!("{username_path}.expression"),
            &mappings.username.expression,
            "claims.email_verified must be used in claimMappings.username.expression or \
             claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when \
             claims.email is used in claimMappings.username.expression",
        );
    }

    Some(ClaimMappings {
        username: match username? {
            Ok(claim) => UsernameMapping::Claim(claim),
            Err(expression) => UsernameMapping::Expression(expression),
        },
        groups: groups.map(|groups| match groups {
            Ok(claim) => GroupsMapping::Claim(claim),
            Err(expression) => GroupsMapping::Expression(expression),
        }),
        uid,
        extra,
    })
}

/// kube: a domain-prefixed path (`IsDomainPrefixedPath`), lower case, not under `k8s.io` or
/// `kubernetes.io`.
fn validate_extra_key(key: &str, path: &str, errors: &mut Errors) {
    if key.is_empty() {
        errors.required(path, "");
        return;
    }
    match key.split_once('/') {
        Some((domain, rest)) if !domain.is_empty() && !rest.is_empty() => {
            if let Err(why) = dns1123_subdomain(domain) {
                errors.invalid(path, domain, &why);
            }
            let http_path = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c);
            if !rest.chars().all(http_path) {
                errors.invalid(
                    path,
                    rest,
                    "Invalid path: must match the regex [A-Za-z0-9/\\-._~%!$&'()*+,;=:]+",
                );
            }
        }
        _ => errors.invalid(
            path,
            key,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ),
    }
    if key != key.to_lowercase() {
        errors.invalid(path, key, "must be lowercase");
    }
    let domain = key.split_once('/').map(|(d, _)| d).unwrap_or_default();
    let reserved = |suffix: &str| domain == suffix || domain.ends_with(&format!(".{suffix}"));
    if reserved("kubernetes.io") || reserved("k8s.io") {
        errors.invalid(
            path,
            key,
            "k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use",
        );
    }
}

/// apimachinery's `IsDNS1123Subdomain` (also used by [`crate::audit::policy`]).
pub(crate) fn dns1123_subdomain(value: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if value.len() > 253 {
        return Err("must be no more than 253 characters".to_owned());
    }
    if !value.split('.').all(label_ok) {
        return Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

fn validate_user_rules(
    rules: &[UserValidationRuleFile],
    path: &str,
    errors: &mut Errors,
) -> Vec<UserValidationRule> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{path}[{i}].expression");
        if rule.expression.is_empty() {
            errors.required(&path, "");
            continue;
        }
        if !seen.insert(rule.expression.as_str()) {
            errors.duplicate(&path, &rule.expression);
            continue;
        }
        if let Some(expression) =
            errors.compile(&path, &rule.expression, Variable::User, ResultKind::Bool)
        {
            out.push(UserValidationRule {
                expression,
                message: rule.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::authn::claims::{ClaimError, Claims};
    use crate::authn::mapping::map_user;
    use crate::authn::UserInfo;

    const HEAD: &str =
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";

    /// A minimal valid authenticator, as YAML lines under `jwt:`.
    const MINIMAL: &str = "
- issuer:
    url: https://issuer.example
    audiences: [kube]
  claimMappings:
    username:
      claim: sub
      prefix: ''
";

    fn load(yaml: &str) -> Result<Vec<JwtConfig>, Vec<String>> {
        parse(yaml.as_bytes())
    }

    fn ok(jwt: &str) -> Vec<JwtConfig> {
        load(&format!("{HEAD}jwt:{jwt}")).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    /// The errors for `jwt:` entries `jwt`.
    fn errors(jwt: &str) -> Vec<String> {
        load(&format!("{HEAD}jwt:{jwt}")).expect_err("the configuration should be refused")
    }

    /// Asserts that exactly `expected` is reported.
    #[track_caller]
    fn refused(jwt: &str, expected: &str) {
        assert_eq!(errors(jwt), vec![expected.to_owned()]);
    }

    /// MINIMAL with `issuer_extra` lines added under `issuer:` and `rest` after the mappings.
    fn with(issuer_extra: &str, rest: &str) -> String {
        format!(
            "
- issuer:
    url: https://issuer.example
    audiences: [kube]
{issuer_extra}
  claimMappings:
    username:
      claim: sub
      prefix: ''
{rest}"
        )
    }

    #[test]
    fn a_minimal_file_in_both_versions() {
        for version in API_VERSIONS {
            let configs = load(&format!(
                "apiVersion: {version}\nkind: AuthenticationConfiguration\njwt:{MINIMAL}"
            ))
            .unwrap();
            assert_eq!(configs.len(), 1);
            let config = &configs[0];
            assert_eq!(config.issuer, IssuerSettings::new("https://issuer.example"));
            assert_eq!(config.audiences, ["kube"]);
            // kube-apiserver accepts every algorithm it knows for file-configured issuers.
            assert_eq!(config.algorithms, KUBERNETES_ALGORITHMS.to_vec());
            assert_eq!(
                config.claim_mappings,
                ClaimMappings::username_claim("sub", "")
            );
            assert!(config.claim_validation_rules.is_empty());
            assert!(config.user_validation_rules.is_empty());
        }
        // JSON is YAML.
        let json = json!({
            "apiVersion": "apiserver.config.k8s.io/v1beta1",
            "kind": "AuthenticationConfiguration",
            "jwt": [{
                "issuer": {"url": "https://issuer.example", "audiences": ["kube"]},
                "claimMappings": {"username": {"claim": "sub", "prefix": ""}},
            }],
        });
        assert_eq!(parse(json.to_string().as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn version_and_kind_are_checked() {
        let file = |head: &str| load(&format!("{head}jwt:{MINIMAL}")).unwrap_err();
        assert_eq!(
            file(
                "apiVersion: apiserver.config.k8s.io/v1alpha1\nkind: AuthenticationConfiguration\n"
            ),
            [
                "apiVersion: Unsupported value: \"apiserver.config.k8s.io/v1alpha1\": supported \
              values: \"apiserver.config.k8s.io/v1\", \"apiserver.config.k8s.io/v1beta1\""
            ]
        );
        assert_eq!(
            file("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\n"),
            [
                "kind: Unsupported value: \"AuthorizationConfiguration\": supported values: \
              \"AuthenticationConfiguration\""
            ]
        );
        assert_eq!(file("kind: AuthenticationConfiguration\n").len(), 1);
        assert_eq!(load("  \n").unwrap_err(), ["the file is empty"]);
    }

    #[test]
    fn decoding_is_strict() {
        // Unknown fields, at any depth, name the field and its place.
        for (yaml, field) in [
            (format!("{HEAD}bogus: 1\njwt:{MINIMAL}"), "bogus"),
            (
                format!("{HEAD}jwt:{}", with("    audienceMatchPolic: MatchAny", "")),
                "audienceMatchPolic",
            ),
            (
                format!("{HEAD}jwt:{}", with("", "    Username: {}")),
                "Username",
            ),
            (
                format!(
                    "{HEAD}jwt:{}",
                    with(
                        "",
                        "  claimValidationRules:\n  - claim: a\n    requiredvalue: b"
                    )
                ),
                "requiredvalue",
            ),
        ] {
            let errors = load(&yaml).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains("unknown field") && errors[0].contains(field),
                "{errors:?}"
            );
        }
        // Duplicate keys.
        let duplicate = format!("{HEAD}jwt:{}", with("    url: https://other.example", ""));
        let errors = load(&duplicate).unwrap_err();
        assert!(errors[0].to_lowercase().contains("duplicate"), "{errors:?}");
        // Wrong types.
        let errors = load(&format!(
            "{HEAD}jwt:{}",
            with("    certificateAuthority: [a]", "")
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn alias_bombs_are_refused_not_expanded() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            yaml.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(load(&yaml).is_err());
    }

    #[test]
    fn the_number_of_authenticators_is_bounded() {
        refused(
            " []",
            "jwt: Required value: at least one authenticator is required (the proxy admits no \
             one without one)",
        );
        let many: String = (0..65)
            .map(|i| {
                format!(
                    "
- issuer: {{url: 'https://i{i}.example', audiences: [kube]}}
  claimMappings: {{username: {{claim: sub, prefix: ''}}}}"
                )
            })
            .collect();
        refused(&many, "jwt: Too many: 65: must have at most 64 items");
        let sixty_four: String = many.split("\n- ").take(65).collect::<Vec<_>>().join("\n- ");
        assert_eq!(ok(&sixty_four).len(), 64);
    }

    #[test]
    fn issuer_url_rules() {
        let url = |url: &str| {
            errors(&format!(
                "
- issuer: {{url: '{url}', audiences: [kube]}}
  claimMappings: {{username: {{claim: sub, prefix: ''}}}}"
            ))
        };
        assert_eq!(url(""), ["jwt[0].issuer.url: Required value"]);
        assert_eq!(
            url("http://issuer.example"),
            ["jwt[0].issuer.url: Invalid value: \"http://issuer.example\": URL scheme must be https"]
        );
        assert_eq!(
            url("https://user:pw@issuer.example"),
            ["jwt[0].issuer.url: Invalid value: \"https://user:pw@issuer.example\": URL must not contain a username or password"]
        );
        assert_eq!(
            url("https://issuer.example?a=b"),
            ["jwt[0].issuer.url: Invalid value: \"https://issuer.example?a=b\": URL must not contain a query"]
        );
        assert_eq!(
            url("https://issuer.example#x"),
            ["jwt[0].issuer.url: Invalid value: \"https://issuer.example#x\": URL must not contain a fragment"]
        );
        assert_eq!(url("issuer.example").len(), 1);
        // Paths and trailing slashes are the issuer's business.
        assert_eq!(
            ok("
- issuer: {url: 'https://issuer.example/realms/a/', audiences: [kube]}
  claimMappings: {username: {claim: sub, prefix: ''}}")[0]
                .issuer
                .url,
            "https://issuer.example/realms/a/"
        );
    }

    #[test]
    fn discovery_url_rules() {
        let configs = ok(&with(
            "    discoveryURL: https://dex.dex.svc/.well-known/openid-configuration",
            "",
        ));
        assert_eq!(
            configs[0].issuer.discovery_url.as_deref(),
            Some("https://dex.dex.svc/.well-known/openid-configuration")
        );
        refused(
            &with("    discoveryURL: https://issuer.example/", ""),
            "jwt[0].issuer.discoveryURL: Invalid value: \"https://issuer.example/\": discoveryURL must be different from URL",
        );
        refused(
            &with("    discoveryURL: http://dex.svc/d", ""),
            "jwt[0].issuer.discoveryURL: Invalid value: \"http://dex.svc/d\": URL scheme must be https",
        );
    }

    #[test]
    fn issuers_and_discovery_urls_are_unique() {
        let entry = |url: &str, discovery: &str| {
            format!(
                "
- issuer: {{url: '{url}', discoveryURL: '{discovery}', audiences: [kube]}}
  claimMappings: {{username: {{claim: sub, prefix: ''}}}}"
            )
        };
        assert_eq!(
            errors(&format!(
                "{}{}",
                entry("https://a.example", "https://d.example/1"),
                entry("https://a.example", "https://d.example/1")
            )),
            [
                "jwt[1].issuer.url: Duplicate value: \"https://a.example\"",
                "jwt[1].issuer.discoveryURL: Duplicate value: \"https://d.example/1\"",
            ]
        );
    }

    #[test]
    fn audience_rules() {
        let audiences = |list: &str, policy: &str| {
            load(&format!(
                "{HEAD}jwt:
- issuer: {{url: 'https://i.example', audiences: {list}{policy}}}
  claimMappings: {{username: {{claim: sub, prefix: ''}}}}"
            ))
        };
        assert_eq!(
            audiences("[]", "").unwrap_err(),
            ["jwt[0].issuer.audiences: Required value: at least one jwt[0].issuer.audiences is required"]
        );
        assert_eq!(
            audiences("['']", "").unwrap_err(),
            ["jwt[0].issuer.audiences[0]: Required value"]
        );
        assert_eq!(
            audiences("[a, b, a]", ", audienceMatchPolicy: MatchAny").unwrap_err(),
            ["jwt[0].issuer.audiences[2]: Duplicate value: \"a\""]
        );
        assert_eq!(
            audiences("[a, b]", "").unwrap_err(),
            ["jwt[0].issuer.audienceMatchPolicy: Invalid value: \"\": audienceMatchPolicy must be MatchAny for multiple audiences"]
        );
        assert_eq!(
            audiences("[a]", ", audienceMatchPolicy: MatchAll").unwrap_err(),
            ["jwt[0].issuer.audienceMatchPolicy: Invalid value: \"MatchAll\": audienceMatchPolicy must be empty or MatchAny for single audience"]
        );
        assert_eq!(
            audiences("[a, b]", ", audienceMatchPolicy: MatchAny").unwrap()[0].audiences,
            ["a", "b"]
        );
        assert!(audiences("[a]", ", audienceMatchPolicy: MatchAny").is_ok());
    }

    #[test]
    fn certificate_authority_is_pem_content() {
        let ca = rcgen::generate_simple_self_signed(vec!["issuer.example".to_string()])
            .unwrap()
            .cert
            .pem();
        let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
        let configs = ok(&with(
            &format!("    certificateAuthority: |\n{indented}"),
            "",
        ));
        assert_eq!(
            configs[0].issuer.certificate_authority.as_deref(),
            Some(ca.as_str())
        );
        // A bad bundle is refused without echoing it.
        let errors = errors(&with("    certificateAuthority: not-a-certificate", ""));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .starts_with("jwt[0].issuer.certificateAuthority: Invalid value: \"<omitted>\": "),
            "{errors:?}"
        );
        assert!(!errors[0].contains("not-a-certificate"));
    }

    #[test]
    fn egress_selectors_are_refused() {
        refused(
            &with("    egressSelectorType: controlplane", ""),
            "jwt[0].issuer.egressSelectorType: Unsupported value: \"controlplane\": kube-oidc-proxy has no egress selector; remove the field",
        );
    }

    #[test]
    fn claim_validation_rule_rules() {
        let rules = |yaml: &str| format!("  claimValidationRules:\n{yaml}");
        let configs = ok(&with(
            "",
            &rules("  - claim: hd\n    requiredValue: example.com\n  - expression: claims.hd != ''\n    message: hd"),
        ));
        assert_eq!(configs[0].claim_validation_rules.len(), 2);
        assert_eq!(
            configs[0].claim_validation_rules[0],
            ClaimValidationRule::Required(RequiredClaim {
                claim: "hd".into(),
                value: "example.com".into()
            })
        );
        // An empty requiredValue means the claim must be "".
        assert!(matches!(
            &ok(&with("", &rules("  - claim: hd")))[0].claim_validation_rules[0],
            ClaimValidationRule::Required(r) if r.value.is_empty()
        ));
        for (yaml, expected) in [
            ("  - claim: a\n    expression: 'true'", "jwt[0].claimValidationRules[0]: Invalid value: \"a\": claim and expression can't both be set"),
            ("  - message: x", "jwt[0].claimValidationRules[0]: Required value: claim or expression is required"),
            ("  - claim: a\n    message: x", "jwt[0].claimValidationRules[0].message: Invalid value: \"x\": may not be specified when claim is set"),
            ("  - expression: 'true'\n    requiredValue: x", "jwt[0].claimValidationRules[0].requiredValue: Invalid value: \"x\": may not be specified when expression is set"),
            ("  - claim: a\n  - claim: a", "jwt[1].claimValidationRules[1].claim: Duplicate value: \"a\""),
            ("  - expression: 'true'\n  - expression: 'true'", "jwt[0].claimValidationRules[1].expression: Duplicate value: \"true\""),
            ("  - expression: claims.a ==", "COMPILE"),
            ("  - expression: \"claims.a + 'x'\"", "jwt[0].claimValidationRules[0].expression: Invalid value: \"claims.a + 'x'\": must evaluate to bool"),
            ("  - expression: user.username == 'a'", "jwt[0].claimValidationRules[0].expression: Invalid value: \"user.username == 'a'\": compilation failed: undeclared reference to 'user'"),
        ] {
            let found = errors(&with("", &rules(yaml)));
            let expected = expected.replace("jwt[1]", "jwt[0]");
            if expected == "COMPILE" {
                assert!(found.len() == 1 && found[0].starts_with("jwt[0].claimValidationRules[0].expression: Invalid value: \"claims.a ==\": compilation failed: "), "{found:?}");
            } else {
                assert_eq!(found, [expected], "{yaml}");
            }
        }
    }

    fn mappings(yaml: &str) -> String {
        format!(
            "
- issuer: {{url: 'https://i.example', audiences: [kube]}}
  claimMappings:
{yaml}"
        )
    }

    #[test]
    fn username_rules() {
        for (yaml, expected) in [
            ("    groups: {claim: g, prefix: ''}", "jwt[0].claimMappings.username: Required value: claim or expression is required"),
            ("    username: {claim: sub, prefix: '', expression: claims.sub}", "jwt[0].claimMappings.username: Invalid value: \"\": claim and expression can't both be set"),
            ("    username: {claim: sub}", "jwt[0].claimMappings.username.prefix: Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing"),
            ("    username: {expression: claims.sub, prefix: 'x:'}", "jwt[0].claimMappings.username.prefix: Invalid value: \"x:\": may not be specified when expression is set"),
            ("    username: {expression: 'claims.sub.lower()'}", "jwt[0].claimMappings.username.expression: Invalid value: \"claims.sub.lower()\": compilation failed: undeclared reference to 'lower'"),
        ] {
            assert_eq!(errors(&mappings(yaml)), [expected], "{yaml}");
        }
        let configs = ok(&mappings("    username: {claim: email, prefix: 'oidc:'}"));
        assert_eq!(
            configs[0].claim_mappings.username,
            UsernameMapping::Claim(PrefixedClaim {
                claim: "email".into(),
                prefix: "oidc:".into()
            })
        );
        assert!(matches!(
            ok(&mappings(
                "    username: {expression: \"'x:' + claims.sub\"}"
            ))[0]
                .claim_mappings
                .username,
            UsernameMapping::Expression(_)
        ));
    }

    #[test]
    fn groups_and_uid_rules() {
        let base = "    username: {claim: sub, prefix: ''}\n";
        for (yaml, expected) in [
            ("    groups: {claim: g, expression: claims.g}", "jwt[0].claimMappings.groups: Invalid value: \"\": claim and expression can't both be set"),
            ("    groups: {claim: g}", "jwt[0].claimMappings.groups.prefix: Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing"),
            ("    groups: {expression: claims.g, prefix: ''}", "jwt[0].claimMappings.groups.prefix: Invalid value: \"\": may not be specified when expression is set"),
            ("    uid: {claim: u, expression: claims.u}", "jwt[0].claimMappings.uid: Invalid value: \"\": claim and expression can't both be set"),
            ("    uid: {expression: 'foo'}", "jwt[0].claimMappings.uid.expression: Invalid value: \"foo\": compilation failed: undeclared reference to 'foo'"),
        ] {
            assert_eq!(errors(&mappings(&format!("{base}{yaml}"))), [expected], "{yaml}");
        }
        let config = &ok(&mappings(&format!(
            "{base}    groups: {{claim: groups, prefix: 'g:'}}\n    uid: {{claim: oid}}"
        )))[0];
        assert_eq!(
            config.claim_mappings.groups,
            Some(GroupsMapping::Claim(PrefixedClaim {
                claim: "groups".into(),
                prefix: "g:".into()
            }))
        );
        assert_eq!(
            config.claim_mappings.uid,
            Some(UidMapping::Claim("oid".into()))
        );
    }

    #[test]
    fn extra_rules() {
        let extra = |key: &str, expression: &str| {
            mappings(&format!(
                "    username: {{claim: sub, prefix: ''}}\n    extra:\n    - key: '{key}'\n      valueExpression: \"{expression}\""
            ))
        };
        assert_eq!(
            ok(&extra("example.org/team", "claims.team"))[0]
                .claim_mappings
                .extra
                .len(),
            1
        );
        for (key, expression, expected) in [
            ("team", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"team\": must be a domain-prefixed path (such as \"acme.io/foo\")"),
            ("example.org/Team", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"example.org/Team\": must be lowercase"),
            ("kubernetes.io/x", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"kubernetes.io/x\": k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use"),
            ("authentication.kubernetes.io/credential-id", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"authentication.kubernetes.io/credential-id\": k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use"),
            ("x.k8s.io/y", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"x.k8s.io/y\": k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use"),
            ("example.org/a b", "claims.t", "jwt[0].claimMappings.extra[0].key: Invalid value: \"a b\": Invalid path: must match the regex [A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"),
            ("example.org/team", "", "jwt[0].claimMappings.extra[0].valueExpression: Required value"),
        ] {
            assert_eq!(errors(&extra(key, expression)), [expected], "{key}");
        }
        // An upper-case domain breaks both rules, as in kube-apiserver.
        assert_eq!(
            errors(&extra("Example.org/team", "claims.t")),
            [
                "jwt[0].claimMappings.extra[0].key: Invalid value: \"Example.org\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                "jwt[0].claimMappings.extra[0].key: Invalid value: \"Example.org/team\": must be lowercase",
            ]
        );
        assert_eq!(
            errors(&mappings(
                "    username: {claim: sub, prefix: ''}\n    extra:\n    - {key: example.org/a, valueExpression: claims.a}\n    - {key: example.org/a, valueExpression: claims.b}"
            )),
            ["jwt[0].claimMappings.extra[1].key: Duplicate value: \"example.org/a\""]
        );
    }

    #[test]
    fn an_email_username_expression_needs_email_verified() {
        let message = "claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression";
        assert_eq!(
            errors(&mappings("    username: {expression: claims.email}")),
            [format!("jwt[0].claimMappings.username.expression: Invalid value: \"claims.email\": {message}")]
        );
        for fine in [
            "    username: {expression: 'claims.email_verified ? claims.email : claims.sub'}",
            "    username: {expression: claims.email}\n    extra: [{key: example.org/v, valueExpression: 'string(claims.email_verified)'}]",
            "    username: {expression: claims.sub}",
            "    username: {claim: email, prefix: ''}",
        ] {
            ok(&mappings(fine));
        }
        ok(&format!(
            "{}\n  claimValidationRules:\n  - expression: claims.email_verified == true",
            mappings("    username: {expression: claims.email}")
        ));
    }

    #[test]
    fn user_validation_rule_rules() {
        let rules = |yaml: &str| with("", &format!("  userValidationRules:\n{yaml}"));
        assert_eq!(
            ok(&rules(
                "  - expression: \"!user.username.startsWith('system:')\"\n    message: m"
            ))[0]
                .user_validation_rules
                .len(),
            1
        );
        for (yaml, expected) in [
            ("  - message: m", "jwt[0].userValidationRules[0].expression: Required value"),
            ("  - expression: 'true'\n  - expression: 'true'", "jwt[0].userValidationRules[1].expression: Duplicate value: \"true\""),
            ("  - expression: claims.sub == ''", "jwt[0].userValidationRules[0].expression: Invalid value: \"claims.sub == ''\": compilation failed: undeclared reference to 'claims'"),
            ("  - expression: user.username", "NONE"),
            ("  - expression: \"user.username + 'x'\"", "jwt[0].userValidationRules[0].expression: Invalid value: \"user.username + 'x'\": must evaluate to bool"),
        ] {
            if expected == "NONE" {
                ok(&rules(yaml));
            } else {
                assert_eq!(errors(&rules(yaml)), [expected], "{yaml}");
            }
        }
    }

    #[test]
    fn the_anonymous_section() {
        let file = |anonymous: &str| load(&format!("{HEAD}{anonymous}\njwt:{MINIMAL}"));
        assert!(file("anonymous: {enabled: false}").is_ok());
        assert_eq!(
            file("anonymous: {enabled: true, conditions: [{path: /livez}]}").unwrap_err(),
            ["anonymous.enabled: Unsupported value: \"true\": kube-oidc-proxy never serves anonymous requests; remove the section or set enabled: false"]
        );
        assert_eq!(
            file("anonymous: {enabled: false, conditions: [{path: /livez}]}").unwrap_err(),
            ["anonymous.conditions: Invalid value: \"1 condition(s)\": enabled should be set to true when conditions are defined"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let yaml = "apiVersion: v1\nkind: Config\njwt:
- issuer: {url: 'http://a.example', audiences: []}
  claimMappings: {username: {claim: sub}}
- issuer: {url: 'https://b.example', audiences: [kube]}
  claimValidationRules: [{expression: 'claims.x +'}]
  claimMappings: {username: {expression: 'nope'}, extra: [{key: bad, valueExpression: claims.x}]}
";
        let errors = load(yaml).unwrap_err();
        for expected in [
            "apiVersion: Unsupported value",
            "kind: Unsupported value",
            "jwt[0].issuer.url: Invalid value: \"http://a.example\": URL scheme must be https",
            "jwt[0].issuer.audiences: Required value",
            "jwt[0].claimMappings.username.prefix: Required value",
            "jwt[1].claimValidationRules[0].expression: Invalid value",
            "jwt[1].claimMappings.username.expression: Invalid value: \"nope\": compilation failed: undeclared reference to 'nope'",
            "jwt[1].claimMappings.extra[0].key: Invalid value: \"bad\"",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "missing {expected:?} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 8, "{errors:#?}");
    }

    // ---- the documented examples ----------------------------------------------------------

    fn example(name: &str) -> Vec<JwtConfig> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/examples")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&bytes).unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()))
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    fn map(config: &JwtConfig, value: Value) -> Result<UserInfo, ClaimError> {
        map_user(
            &claims(value),
            &config.claim_mappings,
            &config.claim_validation_rules,
            &config.user_validation_rules,
        )
    }

    /// GitHub Actions claims, shaped as the runner issues them (cicd.md §1.3).
    fn github(overrides: Value) -> Value {
        let mut claims = json!({
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "https://kube.example.com",
            "sub": "repo:acme/shop:ref:refs/heads/main",
            "jti": "f2f7364b-0001",
            "repository": "acme/shop",
            "repository_id": "7654321",
            "repository_owner": "acme",
            "repository_owner_id": "1234567",
            "repository_visibility": "private",
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "ref_protected": "true",
            "sha": "bcdb9add",
            "workflow": "deploy",
            "event_name": "push",
            "actor": "octocat",
            "run_id": "33964329992",
            "run_number": "1",
            "run_attempt": "2",
            "runner_environment": "github-hosted",
            "iat": 1_788_608_938,
            "nbf": 1_788_608_638,
            "exp": 1_788_609_238,
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    /// GitLab CI claims, shaped as GitLab documents them (cicd.md §2).
    fn gitlab(overrides: Value) -> Value {
        let mut claims = json!({
            "iss": "https://gitlab.com",
            "aud": "https://kube.example.com",
            "sub": "project_path:acme/shop:ref_type:branch:ref:main",
            "namespace_id": "72",
            "namespace_path": "acme",
            "project_id": "20",
            "project_path": "acme/shop",
            "ref": "main",
            "ref_type": "branch",
            "ref_path": "refs/heads/main",
            "ref_protected": "true",
            "runner_id": 1,
            "jti": "235b",
            "exp": 1_681_398_793,
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    }

    #[test]
    fn example_human_oidc() {
        let [config] = example("human-oidc.yaml").try_into().unwrap();
        let user = map(
            &config,
            json!({"sub": "u-1", "email": "jane@example.com", "email_verified": true,
                   "groups": ["dev"], "realm_access": {"roles": ["admin"]}}),
        )
        .unwrap();
        assert_eq!(user.username, "jane@example.com");
        assert_eq!(user.groups, ["oidc:dev", "keycloak:admin"]);
        assert_eq!(user.uid.as_deref(), Some("u-1"));
        // Dex tokens without realm roles, and tokens without groups.
        let user = map(
            &config,
            json!({"sub": "u-2", "email": "bo@example.com", "email_verified": true}),
        )
        .unwrap();
        assert!(user.groups.is_empty());
        assert!(matches!(
            map(
                &config,
                json!({"sub": "u", "email": "x@example.com", "email_verified": false})
            ),
            Err(ClaimError::ClaimValidationFailed { .. })
        ));
        assert!(matches!(
            map(
                &config,
                json!({"sub": "u", "email": "system:admin", "email_verified": true})
            ),
            Err(ClaimError::UserValidationFailed { .. })
        ));
    }

    #[test]
    fn example_github_actions() {
        let [config] = example("github-actions.yaml").try_into().unwrap();
        assert_eq!(
            config.issuer.url,
            "https://token.actions.githubusercontent.com"
        );
        let user = map(&config, github(json!({}))).unwrap();
        assert_eq!(
            user,
            UserInfo {
                username: "github:repo:acme/shop:ref:refs/heads/main".into(),
                uid: Some("7654321".into()),
                groups: vec!["github:acme/shop".into()],
                extra: BTreeMap::from([
                    (
                        "authentication.kubernetes.io/credential-id".to_owned(),
                        vec!["JTI=f2f7364b-0001".to_owned()]
                    ),
                    (
                        "token.actions.githubusercontent.com/run".to_owned(),
                        vec!["33964329992/2".to_owned()]
                    ),
                    (
                        "token.actions.githubusercontent.com/sha".to_owned(),
                        vec!["bcdb9add".to_owned()]
                    ),
                ]),
            }
        );
        let refused =
            |overrides: Value, message: &str| match map(&config, github(overrides.clone())) {
                Err(ClaimError::ClaimValidationFailed { message: m, .. }) => {
                    assert_eq!(m, message, "{overrides}")
                }
                other => panic!("{overrides}: {other:?}"),
            };
        refused(
            json!({"repository_owner": "evil", "repository": "evil/shop", "sub": "repo:evil/shop:ref:refs/heads/main"}),
            "only repositories of the acme organisation",
        );
        refused(
            json!({"repository_owner_id": "999"}),
            "only the acme organisation as registered today",
        );
        refused(
            json!({"ref": "refs/heads/feature", "sub": "repo:acme/shop:ref:refs/heads/feature"}),
            "only the main branch",
        );
        // A pull request's token has another ref; an environment job still has `ref`.
        refused(json!({"ref": "refs/pull/7/merge"}), "only the main branch");
        // A token without a required claim is refused (evaluation error, not a pass).
        let mut no_ref = github(json!({}));
        no_ref.as_object_mut().unwrap().remove("ref");
        assert!(matches!(
            map(&config, no_ref),
            Err(ClaimError::Expression { .. })
        ));
    }

    #[test]
    fn example_gitlab_ci() {
        let [config] = example("gitlab-ci.yaml").try_into().unwrap();
        let user = map(&config, gitlab(json!({}))).unwrap();
        assert_eq!(
            user.username,
            "gitlab:project_path:acme/shop:ref_type:branch:ref:main"
        );
        assert_eq!(user.groups, ["gitlab:acme/shop"]);
        assert_eq!(user.uid.as_deref(), Some("20"));
        assert_eq!(
            map(&config, gitlab(json!({"ref_protected": "false"}))),
            Err(ClaimError::RequiredClaimMismatch {
                claim: "ref_protected".into()
            })
        );
        assert!(matches!(
            map(&config, gitlab(json!({"project_path": "evil/shop"}))),
            Err(ClaimError::ClaimValidationFailed { .. })
        ));
        assert!(matches!(
            map(&config, gitlab(json!({"namespace_id": "73"}))),
            Err(ClaimError::ClaimValidationFailed { .. })
        ));
    }

    /// The AuthenticationConfigurations in the ```yaml blocks of `docs/ci-cd/<name>`, loaded
    /// as the proxy loads its file.
    fn guide(name: &str) -> Vec<JwtConfig> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/ci-cd")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let configs: Vec<JwtConfig> = text
            .split("```yaml\n")
            .skip(1)
            .filter_map(|rest| rest.split("\n```").next())
            .filter(|block| block.contains("kind: AuthenticationConfiguration"))
            .flat_map(|block| parse(block.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e:#?}")))
            .collect();
        assert!(
            !configs.is_empty(),
            "{name}: no AuthenticationConfiguration"
        );
        configs
    }

    fn refused_with(config: &JwtConfig, claims: Value, message: &str) {
        match map(config, claims.clone()) {
            Err(ClaimError::ClaimValidationFailed { message: m, .. }) => {
                assert_eq!(m, message, "{claims}")
            }
            other => panic!("{claims}: {other:?}"),
        }
    }

    #[test]
    fn ci_cd_guide_github_actions() {
        let [config] = guide("github-actions.md").try_into().unwrap();
        let user = map(&config, github(json!({}))).unwrap();
        assert_eq!(user.username, "github:repo:7654321:ref:refs/heads/main");
        assert!(user.groups.is_empty());
        assert_eq!(
            user.extra["token.actions.githubusercontent.com/repository"],
            ["acme/shop"]
        );
        assert_eq!(
            user.extra["token.actions.githubusercontent.com/run"],
            ["33964329992/2"]
        );
        // A job with the allowed environment keeps its ref: both rules hold.
        assert!(map(&config, github(json!({"environment": "production"}))).is_ok());
        for (overrides, message) in [
            (
                json!({"repository_owner_id": "7777777"}),
                "only the acme organisation, by ID",
            ),
            // Same name, another repository (re-created after a deletion).
            (
                json!({"repository_id": "9999999"}),
                "only repositories allowed to deploy, by ID",
            ),
            (json!({"ref": "refs/heads/feature"}), "only the main branch"),
            (
                json!({"ref_type": "tag", "ref": "refs/tags/v1"}),
                "only the main branch",
            ),
            (json!({"ref_protected": "false"}), "only protected branches"),
            (
                json!({"event_name": "pull_request"}),
                "only pushes and manual runs, never pull requests",
            ),
            (
                json!({"environment": "staging"}),
                "only the production environment, when the job names one",
            ),
        ] {
            refused_with(&config, github(overrides), message);
        }
    }

    #[test]
    fn ci_cd_guide_gitlab_ci() {
        let [config] = guide("gitlab-ci.md").try_into().unwrap();
        assert_eq!(config.issuer.url, "https://gitlab.com");
        let job = |overrides: Value| {
            let mut claims = gitlab(json!({
                "sha": "714a629c", "pipeline_id": "574", "job_id": "302", "user_login": "sample-user",
            }));
            for (k, v) in overrides.as_object().unwrap() {
                claims[k] = v.clone();
            }
            claims
        };
        let user = map(&config, job(json!({}))).unwrap();
        assert_eq!(user.username, "gitlab:project:20:ref:main");
        assert_eq!(user.extra["gitlab.com/pipeline"], ["574/302"]);
        assert_eq!(user.extra["gitlab.com/project-path"], ["acme/shop"]);
        assert!(map(
            &config,
            job(json!({"environment": "production", "environment_protected": "true"}))
        )
        .is_ok());
        for (overrides, message) in [
            (json!({"namespace_id": "73"}), "only the acme group, by ID"),
            (
                json!({"project_id": "21"}),
                "only projects allowed to deploy, by ID",
            ),
            (json!({"ref": "feature"}), "only the main branch"),
            (json!({"ref_protected": "false"}), "only protected branches"),
            (
                json!({"environment": "production", "environment_protected": "false"}),
                "only the protected production environment, when the job names one",
            ),
        ] {
            refused_with(&config, job(overrides), message);
        }
    }

    #[test]
    fn ci_cd_guide_other_ci() {
        let [config] = guide("other-ci.md").try_into().unwrap();
        let account = |uid: &str| {
            json!({
                "sub": "system:serviceaccount:ci:deployer",
                "kubernetes.io": {
                    "namespace": "ci",
                    "serviceaccount": {"name": "deployer", "uid": uid},
                    "pod": {"name": "deployer-7d9f", "uid": "p-1"},
                },
            })
        };
        let user = map(&config, account("4f9a3c1e-0d55-4a6e-9f1b-2b3c4d5e6f70")).unwrap();
        assert_eq!(user.username, "cluster-b:system:serviceaccount:ci:deployer");
        assert_eq!(user.extra["cluster-b.example.com/pod"], ["deployer-7d9f"]);
        refused_with(
            &config,
            account("00000000-0000-0000-0000-000000000000"),
            "only the ci/deployer ServiceAccount as created today",
        );
    }

    #[test]
    fn example_people_and_pipelines() {
        let configs = example("people-and-pipelines.yaml");
        let urls: Vec<&str> = configs.iter().map(|c| c.issuer.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://dex.example.com",
                "https://token.actions.githubusercontent.com",
                "https://gitlab.com"
            ]
        );
        let person = map(
            &configs[0],
            json!({"email": "jane@example.com", "groups": ["dev"]}),
        )
        .unwrap();
        assert_eq!(
            (person.username.as_str(), person.groups.as_slice()),
            ("jane@example.com", &["oidc:dev".to_owned()][..])
        );
        assert_eq!(
            map(&configs[1], github(json!({}))).unwrap().groups,
            ["github:acme/shop"]
        );
        assert!(map(&configs[1], github(json!({"repository_owner": "evil"}))).is_err());
        assert_eq!(
            map(&configs[2], gitlab(json!({}))).unwrap().groups,
            ["gitlab:acme/shop"]
        );
        assert!(map(&configs[2], gitlab(json!({"ref_protected": "false"}))).is_err());
    }
}
