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

/// Collects errors as kube-apiserver's `field.ErrorList` prints them.
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn required(&mut self, path: &str, detail: &str) {
        self.0.push(if detail.is_empty() {
            format!("{path}: Required value")
        } else {
            format!("{path}: Required value: {detail}")
        });
    }

    fn invalid(&mut self, path: &str, value: &str, detail: &str) {
        self.0
            .push(format!("{path}: Invalid value: {value:?}: {detail}"));
    }

    fn duplicate(&mut self, path: &str, value: &str) {
        self.0.push(format!("{path}: Duplicate value: {value:?}"));
    }

    fn unsupported(&mut self, path: &str, value: &str, detail: &str) {
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

/// apimachinery's `IsDNS1123Subdomain`.
fn dns1123_subdomain(value: &str) -> Result<(), String> {
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
