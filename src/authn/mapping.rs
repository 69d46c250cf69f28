//! How a verified token's claims become the user to impersonate: kube-apiserver's
//! `claimMappings`, `claimValidationRules` and `userValidationRules` (the `jwt` entries of an
//! `AuthenticationConfiguration`, k8s-semantics §2), each with a plain claim or a CEL expression.
//! The `--oidc-*` flags produce the same model (plain claims and required-claim rules), so there
//! is one code path.
//!
//! Order, as kube-apiserver's `AuthenticateToken` (oidc.go L884-969): username, groups, uid,
//! extra (the `jti` credential id first), the claim rules with `claim`, the claim rules with an
//! expression, then the user rules on the mapped user. The first failure refuses the token.
//! Finally, stricter than kube: an empty username from a plain claim is refused (see
//! [`ClaimError::EmptyUsername`]).

use std::collections::BTreeMap;

use super::cel::{self, EvalError, Expression, Input};
use super::claims::{self, ClaimError, Claims, PrefixedClaim, RequiredClaim};
use super::UserInfo;

/// Where the username comes from (`claimMappings.username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameMapping {
    /// A claim and its prefix.
    Claim(PrefixedClaim),
    /// A CEL expression on `claims` that must return a non-empty string.
    Expression(Expression),
}

/// Where the groups come from (`claimMappings.groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupsMapping {
    /// A claim (a string or an array of strings) and the prefix of each group.
    Claim(PrefixedClaim),
    /// A CEL expression on `claims` returning a string, a list of strings, or null.
    Expression(Expression),
}

/// Where the uid comes from (`claimMappings.uid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UidMapping {
    /// A claim that must be present and a string.
    Claim(String),
    /// A CEL expression on `claims` that must return a string.
    Expression(Expression),
}

/// One `claimMappings.extra` entry: a key and the expression giving its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMapping {
    /// The extra key: a lower-case, domain-prefixed path (`example.org/foo`).
    pub key: String,
    /// A CEL expression on `claims` returning a string, a list of strings, or null; no values
    /// means the key is left out.
    pub value: Expression,
}

/// How claims become a Kubernetes user (`claimMappings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMappings {
    /// The username: required.
    pub username: UsernameMapping,
    /// The groups; `None` for none.
    pub groups: Option<GroupsMapping>,
    /// The uid; `None` for none.
    pub uid: Option<UidMapping>,
    /// Extra attributes from expressions.
    pub extra: Vec<ExtraMapping>,
}

/// One `claimValidationRules` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValidationRule {
    /// `claim` + `requiredValue`: the claim must be a string equal to the value.
    Required(RequiredClaim),
    /// `expression` + `message`: a CEL expression on `claims` that must return true.
    Expression {
        /// The rule.
        expression: Expression,
        /// Logged when the rule is false.
        message: String,
    },
}

/// One `userValidationRules` entry: a CEL expression on `user` that must return true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserValidationRule {
    /// The rule.
    pub expression: Expression,
    /// Logged when the rule is false.
    pub message: String,
}

/// The `claims` variable, converted at most once per token and only if an expression needs it.
struct LazyClaims<'a> {
    claims: &'a Claims,
    input: Option<Result<Input, EvalError>>,
}

impl LazyClaims<'_> {
    fn evaluate(
        &mut self,
        what: &'static str,
        expression: &Expression,
    ) -> Result<cel::Value, ClaimError> {
        let claims = self.claims;
        let input = self.input.get_or_insert_with(|| Input::claims(claims));
        let failed = |error: EvalError| ClaimError::Expression {
            what,
            expression: expression.source().to_owned(),
            error,
        };
        let input = input.as_ref().map_err(|e| failed(e.clone()))?;
        expression.evaluate(input).map_err(failed)
    }

    fn converted<T>(
        &mut self,
        what: &'static str,
        expression: &Expression,
        convert: impl FnOnce(cel::Value) -> Result<T, EvalError>,
    ) -> Result<T, ClaimError> {
        let value = self.evaluate(what, expression)?;
        convert(value).map_err(|error| ClaimError::Expression {
            what,
            expression: expression.source().to_owned(),
            error,
        })
    }
}

/// Maps validated claims to the user to impersonate, in kube-apiserver's order (module docs).
pub fn map_user(
    claims: &Claims,
    mappings: &ClaimMappings,
    claim_rules: &[ClaimValidationRule],
    user_rules: &[UserValidationRule],
) -> Result<UserInfo, ClaimError> {
    let mut lazy = LazyClaims {
        claims,
        input: None,
    };

    let username = match &mappings.username {
        UsernameMapping::Claim(claim) => claims::username_from_claim(claims, claim)?,
        UsernameMapping::Expression(expression) => {
            let username = lazy.converted("username claim expression", expression, |v| {
                cel::expect_string(v, "username claim expression must return a string")
            })?;
            if username.is_empty() {
                return Err(ClaimError::EmptyUsernameExpression);
            }
            username
        }
    };

    let groups = match &mappings.groups {
        None => Vec::new(),
        Some(GroupsMapping::Claim(claim)) => claims::groups_from_claim(claims, claim)?,
        Some(GroupsMapping::Expression(expression)) => lazy.converted(
            "group claim expression",
            expression,
            cel::expect_string_list,
        )?,
    };

    let uid = match &mappings.uid {
        None => None,
        Some(UidMapping::Claim(claim)) => claims::uid_from_claim(claims, claim)?,
        Some(UidMapping::Expression(expression)) => {
            Some(lazy.converted("uid claim expression", expression, |v| {
                cel::expect_string(v, "uid claim expression must return a string")
            })?)
            .filter(|uid| !uid.is_empty())
        }
    };

    let mut extra = BTreeMap::new();
    if let Some(id) = claims::credential_id(claims) {
        extra.insert(claims::CREDENTIAL_ID_EXTRA_KEY.to_owned(), vec![id]);
    }
    for mapping in &mappings.extra {
        let values = lazy.converted(
            "extra claim expression",
            &mapping.value,
            cel::expect_string_list,
        )?;
        if !values.is_empty() {
            extra.insert(mapping.key.clone(), values);
        }
    }

    // kube checks every `claim` rule (its required claims) before any expression rule.
    for rule in claim_rules {
        if let ClaimValidationRule::Required(required) = rule {
            claims::check_required_claim(claims, required)?;
        }
    }
    for rule in claim_rules {
        if let ClaimValidationRule::Expression {
            expression,
            message,
        } = rule
        {
            let passed =
                lazy.converted("claim validation expression", expression, cel::expect_bool)?;
            if !passed {
                return Err(ClaimError::ClaimValidationFailed {
                    expression: expression.source().to_owned(),
                    message: message.clone(),
                });
            }
        }
    }

    let user = UserInfo {
        username,
        uid,
        groups,
        extra,
    };
    if !user_rules.is_empty() {
        let input = Input::user(&user);
        for rule in user_rules {
            let failed = |error: EvalError| ClaimError::Expression {
                what: "user info validation rule",
                expression: rule.expression.source().to_owned(),
                error,
            };
            let value = rule.expression.evaluate(&input).map_err(failed)?;
            if !cel::expect_bool(value).map_err(failed)? {
                return Err(ClaimError::UserValidationFailed {
                    expression: rule.expression.source().to_owned(),
                    message: rule.message.clone(),
                });
            }
        }
    }

    if user.username.is_empty() {
        return Err(ClaimError::EmptyUsername);
    }
    Ok(user)
}

impl ClaimMappings {
    /// Plain-claim mappings: a username claim and prefix, nothing else (the `--oidc-*` flags'
    /// starting point).
    pub fn username_claim(claim: &str, prefix: &str) -> Self {
        Self {
            username: UsernameMapping::Claim(PrefixedClaim {
                claim: claim.to_owned(),
                prefix: prefix.to_owned(),
            }),
            groups: None,
            uid: None,
            extra: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::authn::claims::{invalid_type, missing};
    use serde_json::{json, Value};

    use super::*;
    use crate::authn::cel::{compile, ResultKind, Variable};
    use crate::authn::claims::CREDENTIAL_ID_EXTRA_KEY;

    /// Standard claims plus `extra`, as the claims tests build them.
    fn claims_with(extra: Value) -> Claims {
        let mut claims = json!({
            "iss": "https://issuer.example",
            "aud": "my-client",
            "sub": "1234",
            "exp": 2_000_003_600,
        })
        .as_object()
        .unwrap()
        .clone();
        for (name, value) in extra.as_object().unwrap() {
            claims.insert(name.clone(), value.clone());
        }
        claims
    }

    fn expr(source: &str) -> Expression {
        compile(source, Variable::Claims, ResultKind::Any).unwrap()
    }

    fn rule(source: &str, message: &str) -> ClaimValidationRule {
        ClaimValidationRule::Expression {
            expression: compile(source, Variable::Claims, ResultKind::Bool).unwrap(),
            message: message.to_owned(),
        }
    }

    fn user_rule(source: &str, message: &str) -> UserValidationRule {
        UserValidationRule {
            expression: compile(source, Variable::User, ResultKind::Bool).unwrap(),
            message: message.to_owned(),
        }
    }

    fn required(rules: &[RequiredClaim]) -> Vec<ClaimValidationRule> {
        rules
            .iter()
            .cloned()
            .map(ClaimValidationRule::Required)
            .collect()
    }

    // ---- plain claims (the flag path and `claim` mappings) ----

    fn mappings(username_claim: &str, prefix: &str) -> ClaimMappings {
        ClaimMappings::username_claim(username_claim, prefix)
    }

    fn with_groups(prefix: &str) -> ClaimMappings {
        ClaimMappings {
            groups: Some(GroupsMapping::Claim(PrefixedClaim {
                claim: "groups".to_owned(),
                prefix: prefix.to_owned(),
            })),
            ..mappings("username", "")
        }
    }

    fn map(claims: Value, mappings: &ClaimMappings) -> Result<UserInfo, ClaimError> {
        map_user(&claims_with(claims), mappings, &[], &[])
    }

    fn user(username: &str) -> UserInfo {
        UserInfo {
            username: username.to_owned(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn username_comes_from_the_claim_with_its_prefix() {
        assert_eq!(
            map(json!({ "username": "jane" }), &mappings("username", "")),
            Ok(user("jane"))
        );
        assert_eq!(
            map(
                json!({ "username": "jane" }),
                &mappings("username", "oidc:")
            ),
            Ok(user("oidc:jane"))
        );
        assert_eq!(
            map(json!({}), &mappings("sub", "https://issuer.example#")),
            Ok(user("https://issuer.example#1234"))
        );
    }

    #[test]
    fn username_must_be_present_and_a_string() {
        assert_eq!(
            map(json!({}), &mappings("username", "p:")),
            Err(missing("username"))
        );
        for bad in [json!(42), json!(["jane"]), json!(true)] {
            assert_eq!(
                map(json!({ "username": bad }), &mappings("username", "")),
                Err(invalid_type("username", "a string"))
            );
        }
    }

    #[test]
    fn an_empty_username_is_refused_unlike_kube() {
        // kube-apiserver accepts these (its test "empty username is allowed via claim"); a proxy
        // must not, or the request would run as the proxy itself.
        for empty in [json!(""), json!(null)] {
            assert_eq!(
                map(json!({ "username": empty }), &mappings("username", "")),
                Err(ClaimError::EmptyUsername)
            );
        }
        // With a prefix the mapped name is not empty.
        assert_eq!(
            map(json!({ "username": "" }), &mappings("username", "oidc:")),
            Ok(user("oidc:"))
        );
    }

    #[test]
    fn email_verified_is_checked_only_for_the_email_claim() {
        let email = mappings("email", "");
        let jane = "jane@example.com";
        assert_eq!(map(json!({ "email": jane }), &email), Ok(user(jane)));
        assert_eq!(
            map(json!({ "email": jane, "email_verified": true }), &email),
            Ok(user(jane))
        );
        assert_eq!(
            map(json!({ "email": jane, "email_verified": false }), &email),
            Err(ClaimError::EmailNotVerified)
        );
        assert_eq!(
            map(json!({ "email": jane, "email_verified": null }), &email),
            Err(ClaimError::EmailNotVerified)
        );
        assert_eq!(
            map(json!({ "email": jane, "email_verified": "false" }), &email),
            Err(invalid_type("email_verified", "a boolean"))
        );
        assert_eq!(
            map(json!({ "email": jane, "email_verified": "true" }), &email),
            Err(invalid_type("email_verified", "a boolean"))
        );
        // Another username claim ignores email_verified entirely.
        assert_eq!(
            map(
                json!({ "username": "jane", "email_verified": false }),
                &mappings("username", "")
            ),
            Ok(user("jane"))
        );
    }

    #[test]
    fn groups_are_a_string_or_an_array_of_strings_with_the_prefix() {
        let groups =
            |claims: Value, prefix: &str| map(claims, &with_groups(prefix)).map(|user| user.groups);
        let jane = |groups: Value| json!({ "username": "jane", "groups": groups });
        assert_eq!(
            groups(jane(json!(["team1", "team2"])), ""),
            Ok(vec!["team1".into(), "team2".into()])
        );
        assert_eq!(groups(jane(json!("team1")), ""), Ok(vec!["team1".into()]));
        assert_eq!(
            groups(jane(json!(["team1", "team2"])), "groups:"),
            Ok(vec!["groups:team1".into(), "groups:team2".into()])
        );
        assert_eq!(
            groups(jane(json!(["", "a"])), ""),
            Ok(vec![String::new(), "a".into()])
        );
        assert_eq!(groups(jane(json!(null)), "groups:"), Ok(vec![]));
        assert_eq!(groups(jane(json!([])), "groups:"), Ok(vec![]));
        assert_eq!(groups(json!({ "username": "jane" }), "groups:"), Ok(vec![]));

        let expected = "a string or an array of strings";
        for bad in [
            json!(42),
            json!(["team1", 42]),
            json!(["team1", null]),
            json!({ "a": 1 }),
            json!(true),
        ] {
            assert_eq!(
                groups(jane(bad.clone()), ""),
                Err(invalid_type("groups", expected)),
                "{bad}"
            );
        }
        // Without a groups mapping the claim is not read at all.
        assert_eq!(
            map(jane(json!(42)), &mappings("username", "")).map(|user| user.groups),
            Ok(vec![])
        );
    }

    #[test]
    fn uid_claim_must_be_present_and_a_string() {
        let uid = ClaimMappings {
            uid: Some(UidMapping::Claim("uid".to_owned())),
            ..mappings("username", "")
        };
        assert_eq!(
            map(json!({ "username": "jane", "uid": "1234" }), &uid).map(|user| user.uid),
            Ok(Some("1234".to_owned()))
        );
        assert_eq!(
            map(json!({ "username": "jane" }), &uid),
            Err(missing("uid"))
        );
        assert_eq!(
            map(json!({ "username": "jane", "uid": 1234 }), &uid),
            Err(invalid_type("uid", "a string"))
        );
        for empty in [json!(""), json!(null)] {
            assert_eq!(
                map(json!({ "username": "jane", "uid": empty }), &uid).map(|user| user.uid),
                Ok(None)
            );
        }
    }

    #[test]
    fn a_string_jti_becomes_the_credential_id_extra() {
        let extra = |jti: Value| {
            map(
                json!({ "username": "jane", "jti": jti }),
                &mappings("username", ""),
            )
            .map(|user| user.extra)
        };
        assert_eq!(
            extra(json!("ea28ed49")),
            Ok(BTreeMap::from([(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec!["JTI=ea28ed49".to_owned()]
            )]))
        );
        for ignored in [json!(1234), json!(""), json!(null), json!(["a"])] {
            assert_eq!(extra(ignored.clone()), Ok(BTreeMap::new()), "{ignored}");
        }
    }

    #[test]
    fn required_claims_must_be_present_strings_with_the_value() {
        let required_claims = [
            RequiredClaim {
                claim: "hd".to_owned(),
                value: "example.com".to_owned(),
            },
            RequiredClaim {
                claim: "sub".to_owned(),
                value: "1234".to_owned(),
            },
        ];
        let check = |claims: Value| {
            map_user(
                &claims_with(claims),
                &mappings("username", ""),
                &required(&required_claims),
                &[],
            )
        };
        assert_eq!(
            check(json!({ "username": "jane", "hd": "example.com" })),
            Ok(user("jane"))
        );
        assert_eq!(
            check(json!({ "username": "jane" })),
            Err(ClaimError::MissingRequiredClaim {
                claim: "hd".to_owned()
            })
        );
        assert_eq!(
            check(json!({ "username": "jane", "hd": "example.org" })),
            Err(ClaimError::RequiredClaimMismatch {
                claim: "hd".to_owned()
            })
        );
        assert_eq!(
            check(json!({ "username": "jane", "hd": null })),
            Err(ClaimError::RequiredClaimMismatch {
                claim: "hd".to_owned()
            })
        );
        assert_eq!(
            check(json!({ "username": "jane", "hd": ["example.com"] })),
            Err(invalid_type("hd", "a string"))
        );
        assert_eq!(
            check(json!({ "username": "jane", "hd": "example.com", "sub": "4321" })),
            Err(ClaimError::RequiredClaimMismatch {
                claim: "sub".to_owned()
            })
        );
        let empty_value = [RequiredClaim {
            claim: "hd".to_owned(),
            value: String::new(),
        }];
        assert_eq!(
            map_user(
                &claims_with(json!({ "username": "jane", "hd": null })),
                &mappings("username", ""),
                &required(&empty_value),
                &[]
            ),
            Ok(user("jane"))
        );
    }

    #[test]
    fn mapping_errors_follow_kube_order() {
        // username, then groups, then uid, then required claims, then the empty-username rule.
        let all = ClaimMappings {
            uid: Some(UidMapping::Claim("uid".to_owned())),
            ..with_groups("")
        };
        let required_claims = [RequiredClaim {
            claim: "hd".to_owned(),
            value: "example.com".to_owned(),
        }];
        let check =
            |claims: Value| map_user(&claims_with(claims), &all, &required(&required_claims), &[]);
        assert_eq!(
            check(json!({ "groups": 1, "uid": 1 })),
            Err(missing("username"))
        );
        assert_eq!(
            check(json!({ "username": "", "groups": 1, "uid": 1 })),
            Err(invalid_type("groups", "a string or an array of strings"))
        );
        assert_eq!(check(json!({ "username": "" })), Err(missing("uid")));
        assert_eq!(
            check(json!({ "username": "", "uid": "u" })),
            Err(ClaimError::MissingRequiredClaim {
                claim: "hd".to_owned()
            })
        );
        assert_eq!(
            check(json!({ "username": "", "uid": "u", "hd": "example.com" })),
            Err(ClaimError::EmptyUsername)
        );
    }

    #[test]
    fn a_full_mapping() {
        let all = ClaimMappings {
            uid: Some(UidMapping::Claim("oid".to_owned())),
            ..with_groups("oidc:")
        };
        let claims = json!({
            "username": "jane",
            "groups": ["team1", "team2"],
            "oid": "0a1b",
            "jti": "id-1",
        });
        assert_eq!(
            map(claims, &all),
            Ok(UserInfo {
                username: "jane".to_owned(),
                uid: Some("0a1b".to_owned()),
                groups: vec!["oidc:team1".to_owned(), "oidc:team2".to_owned()],
                extra: BTreeMap::from([(
                    CREDENTIAL_ID_EXTRA_KEY.to_owned(),
                    vec!["JTI=id-1".to_owned()]
                )]),
            })
        );
    }

    #[test]
    fn claim_errors_never_contain_claim_values() {
        let secret = "s3cr3t-value";
        let errors = [
            map(json!({ "username": [secret] }), &mappings("username", "")).unwrap_err(),
            map(
                json!({ "email": secret, "email_verified": secret }),
                &mappings("email", ""),
            )
            .unwrap_err(),
            map_user(
                &claims_with(json!({ "username": "jane", "hd": secret })),
                &mappings("username", ""),
                &required(&[RequiredClaim {
                    claim: "hd".to_owned(),
                    value: "example.com".to_owned(),
                }]),
                &[],
            )
            .unwrap_err(),
            map_user(
                &claims_with(json!({ "username": "jane", "hd": secret })),
                &mappings("username", ""),
                &[rule("claims.hd + 1 == 2", "")],
                &[],
            )
            .unwrap_err(),
        ];
        for error in errors {
            assert!(!error.to_string().contains(secret), "{error}");
        }
    }

    // ---- CEL mappings and rules ----

    fn cel_mappings() -> ClaimMappings {
        ClaimMappings {
            username: UsernameMapping::Expression(expr("'github:' + claims.sub")),
            groups: Some(GroupsMapping::Expression(expr(
                "['github:' + claims.repository, '']",
            ))),
            uid: Some(UidMapping::Expression(expr("claims.repository_id"))),
            extra: vec![
                ExtraMapping {
                    key: "example.org/ref".to_owned(),
                    value: expr("claims.ref"),
                },
                ExtraMapping {
                    key: "example.org/none".to_owned(),
                    value: expr("claims.?environment.orValue('')"),
                },
            ],
        }
    }

    fn pipeline(extra: Value) -> Claims {
        let mut claims = claims_with(json!({
            "sub": "repo:acme/shop:ref:refs/heads/main",
            "repository": "acme/shop",
            "repository_id": "74",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "jti": "j-1",
        }));
        for (name, value) in extra.as_object().unwrap() {
            claims.insert(name.clone(), value.clone());
        }
        claims
    }

    #[test]
    fn expressions_map_every_field() {
        assert_eq!(
            map_user(&pipeline(json!({})), &cel_mappings(), &[], &[]),
            Ok(UserInfo {
                username: "github:repo:acme/shop:ref:refs/heads/main".to_owned(),
                uid: Some("74".to_owned()),
                groups: vec!["github:acme/shop".to_owned()],
                extra: BTreeMap::from([
                    (
                        CREDENTIAL_ID_EXTRA_KEY.to_owned(),
                        vec!["JTI=j-1".to_owned()]
                    ),
                    (
                        "example.org/ref".to_owned(),
                        vec!["refs/heads/main".to_owned()]
                    ),
                ]),
            })
        );
    }

    #[test]
    fn expression_results_must_have_the_right_type() {
        let with = |mappings: ClaimMappings| map_user(&pipeline(json!({})), &mappings, &[], &[]);
        let expression_error = |what: &'static str, source: &str, message: &'static str| {
            Err(ClaimError::Expression {
                what,
                expression: source.to_owned(),
                error: EvalError::WrongResultType(message),
            })
        };
        assert_eq!(
            with(ClaimMappings {
                username: UsernameMapping::Expression(expr("claims.exp")),
                ..cel_mappings()
            }),
            expression_error(
                "username claim expression",
                "claims.exp",
                "username claim expression must return a string"
            )
        );
        assert_eq!(
            with(ClaimMappings {
                username: UsernameMapping::Expression(expr("''")),
                ..cel_mappings()
            }),
            Err(ClaimError::EmptyUsernameExpression)
        );
        assert_eq!(
            with(ClaimMappings {
                groups: Some(GroupsMapping::Expression(expr("[1]"))),
                ..cel_mappings()
            }),
            expression_error(
                "group claim expression",
                "[1]",
                "expression must return a string or a list of strings"
            )
        );
        assert_eq!(
            with(ClaimMappings {
                uid: Some(UidMapping::Expression(expr("1"))),
                ..cel_mappings()
            }),
            expression_error(
                "uid claim expression",
                "1",
                "uid claim expression must return a string"
            )
        );
        assert!(matches!(
            with(ClaimMappings {
                extra: vec![ExtraMapping {
                    key: "example.org/x".to_owned(),
                    value: expr("{'a': 1}"),
                }],
                ..cel_mappings()
            }),
            Err(ClaimError::Expression {
                what: "extra claim expression",
                ..
            })
        ));
    }

    #[test]
    fn an_evaluation_error_refuses_the_token() {
        let mappings = ClaimMappings {
            groups: Some(GroupsMapping::Expression(expr("[claims.environment]"))),
            ..cel_mappings()
        };
        assert_eq!(
            map_user(&pipeline(json!({})), &mappings, &[], &[]),
            Err(ClaimError::Expression {
                what: "group claim expression",
                expression: "[claims.environment]".to_owned(),
                error: EvalError::Execution("no such key: environment".to_owned()),
            })
        );
    }

    #[test]
    fn claim_rules_admit_only_matching_pipelines() {
        let rules = [
            rule("claims.repository_owner == 'acme'", "only acme"),
            rule("claims.ref == 'refs/heads/main'", "only main"),
        ];
        let check = |extra: Value| map_user(&pipeline(extra), &cel_mappings(), &rules, &[]);
        assert!(check(json!({})).is_ok());
        assert_eq!(
            check(json!({ "repository_owner": "evil" })),
            Err(ClaimError::ClaimValidationFailed {
                expression: "claims.repository_owner == 'acme'".to_owned(),
                message: "only acme".to_owned(),
            })
        );
        assert_eq!(
            check(json!({ "ref": "refs/heads/feature" })),
            Err(ClaimError::ClaimValidationFailed {
                expression: "claims.ref == 'refs/heads/main'".to_owned(),
                message: "only main".to_owned(),
            })
        );
    }

    #[test]
    fn required_claim_rules_run_before_expression_rules_whatever_their_order() {
        let rules = [
            rule("claims.repository_owner == 'acme'", "only acme"),
            ClaimValidationRule::Required(RequiredClaim {
                claim: "ref_protected".to_owned(),
                value: "true".to_owned(),
            }),
        ];
        assert_eq!(
            map_user(
                &pipeline(json!({ "repository_owner": "evil" })),
                &cel_mappings(),
                &rules,
                &[]
            ),
            Err(ClaimError::MissingRequiredClaim {
                claim: "ref_protected".to_owned()
            })
        );
    }

    #[test]
    fn user_rules_run_on_the_mapped_user() {
        let rules = [user_rule(
            "user.groups.all(g, !g.startsWith('github:evil/'))",
            "no evil groups",
        )];
        let check = |extra: Value| map_user(&pipeline(extra), &cel_mappings(), &[], &rules);
        assert!(check(json!({})).is_ok());
        assert_eq!(
            check(json!({ "repository": "evil/x" })),
            Err(ClaimError::UserValidationFailed {
                expression: "user.groups.all(g, !g.startsWith('github:evil/'))".to_owned(),
                message: "no evil groups".to_owned(),
            })
        );
    }

    #[test]
    fn claims_are_not_converted_without_expressions() {
        // Claims beyond the CEL bounds are fine as long as no expression needs them.
        let wide: Vec<u32> = (0..cel::MAX_CLAIM_VALUES as u32 + 1).collect();
        let claims = json!({ "username": "jane", "wide": wide });
        assert_eq!(
            map(claims.clone(), &mappings("username", "")),
            Ok(user("jane"))
        );
        assert_eq!(
            map_user(
                &claims_with(claims),
                &mappings("username", ""),
                &[rule("true", "")],
                &[]
            ),
            Err(ClaimError::Expression {
                what: "claim validation expression",
                expression: "true".to_owned(),
                error: EvalError::ClaimsTooLarge,
            })
        );
    }
}
