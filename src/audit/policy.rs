//! The `audit.k8s.io/v1` `Policy` (`--audit-policy-file`) and its evaluation, as
//! kube-apiserver's `staging/src/k8s.io/apiserver/pkg/audit/policy/{reader,checker}.go` and
//! `pkg/apis/audit/validation/validation.go` (read at Kubernetes v1.36.0).
//!
//! The file is decoded strictly (unknown fields and duplicate keys are errors) and every
//! problem is reported at once, each naming its field path in kube's words
//! (`rules[2].level: Unsupported value: "Verbose": supported values: ...`). A file with any
//! problem yields no policy at all.
//!
//! Deliberate differences from kube-apiserver:
//! - an unknown field is an error; kube-apiserver warns and falls back to lenient decoding;
//! - the `apiVersion`/`kind` check, validation and the empty-rules check all report together,
//!   where kube stops at the first failing step;
//! - an invalid `resources` entry's path carries its index (`rules[0].resources[1].group`),
//!   which kube leaves out (`rules[0].resources.group`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::request_info::RequestInfo;
use crate::config::authentication::{dns1123_subdomain, Errors};

/// The only accepted `apiVersion`: kube-apiserver dropped `v1alpha1` and `v1beta1` (1.24).
pub const API_VERSION: &str = "audit.k8s.io/v1";
/// The only accepted `kind`.
pub const KIND: &str = "Policy";

/// How much of a request an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// No event at all.
    None,
    /// User, timestamps, resource and verb; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata and both bodies.
    RequestResponse,
}

impl Level {
    /// Every level, least to most.
    pub const ALL: [Level; 4] = [
        Level::None,
        Level::Metadata,
        Level::Request,
        Level::RequestResponse,
    ];

    /// The name a policy file and an event use.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }

    /// True for `None`: the request is not audited.
    pub fn is_none(self) -> bool {
        self == Level::None
    }

    /// True at `Request` and above.
    pub fn records_request_body(self) -> bool {
        self >= Level::Request
    }

    /// True at `RequestResponse`.
    pub fn records_response_body(self) -> bool {
        self >= Level::RequestResponse
    }
}

/// The stages of a request at which events are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// As soon as the request is received, before it is handled.
    RequestReceived,
    /// Once the response headers are sent, for long-running requests only.
    ResponseStarted,
    /// When the response body is complete.
    ResponseComplete,
    /// When handling the request panicked.
    Panic,
}

impl Stage {
    /// Every stage, in the order a request passes them.
    pub const ALL: [Stage; 4] = [
        Stage::RequestReceived,
        Stage::ResponseStarted,
        Stage::ResponseComplete,
        Stage::Panic,
    ];

    /// The name a policy file and an event use.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Stage`]s (`omitStages`): four bits, so it is `Copy` and unions are free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StageSet(u8);

impl StageSet {
    /// No stage.
    pub const EMPTY: StageSet = StageSet(0);

    /// True when `stage` is in the set.
    pub fn contains(self, stage: Stage) -> bool {
        self.0 & stage.bit() != 0
    }

    /// Adds `stage`.
    pub fn insert(&mut self, stage: Stage) {
        self.0 |= stage.bit();
    }

    /// The stages in either set.
    pub fn union(self, other: StageSet) -> StageSet {
        StageSet(self.0 | other.0)
    }

    /// True when no stage is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The stages in the set, in [`Stage::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Stage> {
        Stage::ALL
            .into_iter()
            .filter(move |&stage| self.contains(stage))
    }
}

impl FromIterator<Stage> for StageSet {
    fn from_iter<I: IntoIterator<Item = Stage>>(stages: I) -> Self {
        let mut set = StageSet::EMPTY;
        for stage in stages {
            set.insert(stage);
        }
        set
    }
}

/// A validated audit policy: the first rule matching a request decides its audit level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// In file order; the first match wins.
    pub rules: Vec<PolicyRule>,
    /// Stages omitted for every request, whatever rule matched (or none).
    pub omit_stages: StageSet,
    /// Whether bodies lose `metadata.managedFields`, unless the matching rule says otherwise.
    pub omit_managed_fields: bool,
}

/// One `rules[]` entry. Every non-empty list must match; empty lists match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// The level of the requests this rule matches.
    pub level: Level,
    /// User names (exact).
    pub users: Vec<String>,
    /// Groups, of which the user must have one.
    pub user_groups: Vec<String>,
    /// Kubernetes verbs (`get`, `list`, `watch`, `create`, ...).
    pub verbs: Vec<String>,
    /// Resources; only resource requests can match a rule that has some.
    pub resources: Vec<GroupResources>,
    /// Namespaces, `""` for cluster-scoped requests; only resource requests can match.
    pub namespaces: Vec<String>,
    /// Paths, exact or with a trailing `*`; only non-resource requests can match.
    pub non_resource_urls: Vec<String>,
    /// Stages omitted for this rule's requests, on top of the policy's.
    pub omit_stages: StageSet,
    /// Overrides [`Policy::omit_managed_fields`] when set.
    pub omit_managed_fields: Option<bool>,
}

impl PolicyRule {
    /// A rule at `level` that matches every request.
    pub fn new(level: Level) -> PolicyRule {
        PolicyRule {
            level,
            users: Vec::new(),
            user_groups: Vec::new(),
            verbs: Vec::new(),
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_urls: Vec::new(),
            omit_stages: StageSet::EMPTY,
            omit_managed_fields: None,
        }
    }
}

/// One `resources[]` entry of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group; `""` is the core group, `*` every group (Kubernetes 1.36+).
    #[serde(default)]
    pub group: String,
    /// `pods`, `pods/log`, `*`, `*/log` or `pods/*`; empty matches every resource of the group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty matches every name.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What a policy decides for one request (kube's `audit.RequestAuditConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestAuditConfig {
    /// How much to record; [`Level::None`] when no rule matched.
    pub level: Level,
    /// The stages at which no event is written.
    pub omit_stages: StageSet,
    /// Whether request and response bodies lose `metadata.managedFields`.
    pub omit_managed_fields: bool,
}

impl Policy {
    /// A policy that audits every request at `level` (for tests and defaults).
    pub fn at_level(level: Level) -> Policy {
        Policy {
            rules: vec![PolicyRule::new(level)],
            ..Policy::default()
        }
    }

    /// The audit settings for a request by `user` (with `groups`), as kube-apiserver's
    /// `policyRuleEvaluator.EvaluatePolicyRule`: the first matching rule decides, its
    /// `omitStages` joined with the policy's; no match means [`Level::None`].
    ///
    /// An empty `user` stands for an unauthenticated request (kube's nil user): rules with
    /// `users` or `userGroups` never match it.
    pub fn evaluate(
        &self,
        user: &str,
        groups: &[String],
        info: &RequestInfo,
    ) -> RequestAuditConfig {
        match self
            .rules
            .iter()
            .find(|rule| rule.matches(user, groups, info))
        {
            Some(rule) => RequestAuditConfig {
                level: rule.level,
                omit_stages: self.omit_stages.union(rule.omit_stages),
                omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
            },
            None => RequestAuditConfig {
                level: Level::None,
                omit_stages: self.omit_stages,
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }
}

// ---- matching (checker.go) ---------------------------------------------------------------

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item == value)
}

impl PolicyRule {
    fn matches(&self, user: &str, groups: &[String], info: &RequestInfo) -> bool {
        // An empty list matches anything; no user (unauthenticated) matches no user list.
        let authenticated = !user.is_empty();
        let user_matches = self.users.is_empty() || (authenticated && listed(&self.users, user));
        let group_matches = self.user_groups.is_empty()
            || (authenticated && groups.iter().any(|g| listed(&self.user_groups, g)));
        let verb_matches = self.verbs.is_empty() || listed(&self.verbs, &info.verb);
        if !(user_matches && group_matches && verb_matches) {
            return false;
        }
        // Resource fields win over nonResourceURLs; validation forbids having both.
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(info);
        }
        if !self.non_resource_urls.is_empty() {
            return !info.is_resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&info.path, spec));
        }
        true
    }

    fn matches_resource(&self, info: &RequestInfo) -> bool {
        if !info.is_resource_request {
            return false;
        }
        // A cluster-scoped request has namespace "", so `namespaces: [""]` selects those.
        if !self.namespaces.is_empty() && !listed(&self.namespaces, &info.namespace) {
            return false;
        }
        self.resources.is_empty() || self.resources.iter().any(|gr| gr.matches(info))
    }
}

impl GroupResources {
    fn matches(&self, info: &RequestInfo) -> bool {
        if self.group != info.api_group && self.group != "*" {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        if !self.resource_names.is_empty() && !listed(&self.resource_names, &info.name) {
            return false;
        }
        let (resource, subresource) = (info.resource.as_str(), info.subresource.as_str());
        self.resources.iter().any(|spec| {
            if spec == "*" {
                return true;
            }
            // `pods/*` also matches `pods` itself, as kube's checker does.
            if spec.strip_suffix("/*") == Some(resource) {
                return true;
            }
            match spec.split_once('/') {
                Some((r, s)) => {
                    !subresource.is_empty() && s == subresource && (r == resource || r == "*")
                }
                None => subresource.is_empty() && spec == resource,
            }
        })
    }
}

/// `*` matches every path, `/x*` every path starting with `/x`, anything else only itself.
fn path_matches(path: &str, spec: &str) -> bool {
    match spec.strip_suffix('*') {
        // kube trims every trailing `*`; validation allows only one.
        Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
        None => spec == path,
    }
}

// ---- the file, as written ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<ObjectMetaFile>,
    #[serde(default)]
    rules: Vec<PolicyRuleFile>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

/// The `ObjectMeta` fields a hand-written file plausibly carries; none affects auditing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct ObjectMetaFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    creation_timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyRuleFile {
    /// A string, so a bad level is reported with its path rather than as a decode error.
    #[serde(default)]
    level: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    /// Absent and `false` differ: absent inherits the policy's value.
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

// ---- loading and validation (reader.go, validation.go) -----------------------------------

/// Why a policy file was refused: every problem found, and the file when read from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    path: Option<PathBuf>,
    problems: Vec<String>,
}

impl PolicyError {
    /// The problems, each naming its field path (`rules[0].level: Required value`).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The file, for errors from [`load`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for PolicyError {
    /// One line per problem, each prefixed by the file path when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match &self.path {
                Some(path) => write!(f, "audit policy {}: {problem}", path.display())?,
                None => write!(f, "audit policy: {problem}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Reads, decodes and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let with_path = |problems| PolicyError {
        path: Some(path.to_owned()),
        problems,
    };
    let bytes = std::fs::read(path).map_err(|e| with_path(vec![format!("cannot read: {e}")]))?;
    parse_problems(&bytes).map_err(with_path)
}

/// Decodes and validates a policy; returns it, or every problem found.
pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
    parse_problems(bytes).map_err(|problems| PolicyError {
        path: None,
        problems,
    })
}

fn parse_problems(bytes: &[u8]) -> Result<Policy, Vec<String>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(vec!["the file is empty".to_owned()]);
    }
    let file: PolicyFile = serde_saphyr::from_slice(bytes).map_err(|e| vec![e.to_string()])?;
    let mut errors = Errors::default();

    if file.api_version != API_VERSION {
        errors.unsupported(
            "apiVersion",
            &file.api_version,
            &format!("supported values: {API_VERSION:?}"),
        );
    }
    if file.kind != KIND {
        errors.unsupported("kind", &file.kind, &format!("supported values: {KIND:?}"));
    }
    let omit_stages = validate_omit_stages(&file.omit_stages, "omitStages", &mut errors);
    let rules: Vec<PolicyRule> = file
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| validate_rule(rule, &format!("rules[{i}]"), &mut errors))
        .collect();
    // reader.go refuses a policy without rules after validating it.
    if file.rules.is_empty() {
        errors.required(
            "rules",
            "a policy needs at least one rule (kube-apiserver: \"loaded illegal policy with 0 \
             rules\")",
        );
    }

    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(Policy {
        rules,
        omit_stages,
        omit_managed_fields: file.omit_managed_fields,
    })
}

/// The rule, or `None` when its level is unusable (the caller then has errors anyway).
fn validate_rule(rule: &PolicyRuleFile, path: &str, errors: &mut Errors) -> Option<PolicyRule> {
    let level = validate_level(&rule.level, &format!("{path}.level"), errors);
    let urls_path = format!("{path}.nonResourceURLs");
    validate_non_resource_urls(&rule.non_resource_urls, &urls_path, errors);
    validate_resources(&rule.resources, &format!("{path}.resources"), errors);
    let omit_stages =
        validate_omit_stages(&rule.omit_stages, &format!("{path}.omitStages"), errors);
    if !rule.non_resource_urls.is_empty()
        && (!rule.resources.is_empty() || !rule.namespaces.is_empty())
    {
        invalid_list(
            errors,
            &urls_path,
            &rule.non_resource_urls,
            "rules cannot apply to both regular resources and non-resource URLs",
        );
    }
    Some(PolicyRule {
        level: level?,
        users: rule.users.clone(),
        user_groups: rule.user_groups.clone(),
        verbs: rule.verbs.clone(),
        resources: rule.resources.clone(),
        namespaces: rule.namespaces.clone(),
        non_resource_urls: rule.non_resource_urls.clone(),
        omit_stages,
        omit_managed_fields: rule.omit_managed_fields,
    })
}

/// kube's `field.Invalid` with a list value, which it prints as JSON.
fn invalid_list(errors: &mut Errors, path: &str, values: &[String], detail: &str) {
    let json = serde_json::to_string(values).unwrap_or_default();
    errors
        .0
        .push(format!("{path}: Invalid value: {json}: {detail}"));
}

fn validate_level(level: &str, path: &str, errors: &mut Errors) -> Option<Level> {
    if level.is_empty() {
        errors.required(path, "");
        return None;
    }
    let found = Level::ALL.into_iter().find(|l| l.as_str() == level);
    if found.is_none() {
        let supported: Vec<String> = Level::ALL
            .iter()
            .map(|l| format!("{:?}", l.as_str()))
            .collect();
        errors.unsupported(
            path,
            level,
            &format!("supported values: {}", supported.join(", ")),
        );
    }
    found
}

fn validate_non_resource_urls(urls: &[String], path: &str, errors: &mut Errors) {
    for (i, url) in urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let path = format!("{path}[{i}]");
        if !url.starts_with('/') {
            errors.invalid(
                &path,
                url,
                "non-resource URL rules must begin with a '/' character",
            );
        }
        // Bytes, not chars: only an ASCII `*` before the last byte matters.
        if url.len() > 1 && url.as_bytes()[..url.len() - 1].contains(&b'*') {
            errors.invalid(
                &path,
                url,
                "non-resource URL wildcards '*' must be the final character of the rule",
            );
        }
    }
}

fn validate_resources(resources: &[GroupResources], path: &str, errors: &mut Errors) {
    for (i, gr) in resources.iter().enumerate() {
        let path = format!("{path}[{i}]");
        // "" is the core group; "*" every group (Kubernetes 1.36).
        if !gr.group.is_empty() && gr.group != "*" {
            if let Err(message) = dns1123_subdomain(&gr.group) {
                errors.invalid(&format!("{path}.group"), &gr.group, &message);
            }
        }
        if !gr.resource_names.is_empty() && gr.resources.is_empty() {
            invalid_list(
                errors,
                &format!("{path}.resourceNames"),
                &gr.resource_names,
                "using resourceNames requires at least one resource",
            );
        }
    }
}

/// The valid stages as a set; each invalid one is reported.
fn validate_omit_stages(stages: &[String], path: &str, errors: &mut Errors) -> StageSet {
    let mut set = StageSet::EMPTY;
    for (i, name) in stages.iter().enumerate() {
        match Stage::ALL.into_iter().find(|s| s.as_str() == name) {
            Some(stage) => set.insert(stage),
            None => errors.invalid(
                &format!("{path}[{i}]"),
                name,
                "allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic",
            ),
        }
    }
    set
}
