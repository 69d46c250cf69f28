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

#[cfg(test)]
mod tests {
    //! The tables re-create kube's tests as of Kubernetes v1.36.0:
    //! `staging/src/k8s.io/apiserver/pkg/audit/policy/{checker_test,reader_test}.go` and
    //! `staging/src/k8s.io/apiserver/pkg/apis/audit/validation/validation_test.go`.

    use super::*;
    use Level::{Metadata, Request, RequestResponse};
    use Stage::{Panic, RequestReceived, ResponseComplete, ResponseStarted};

    const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn stages(items: &[Stage]) -> StageSet {
        items.iter().copied().collect()
    }

    // ---- checker_test.go -----------------------------------------------------------------

    /// A resource request (`is_resource_request`, group, version, resource, subresource, name).
    fn resource_request(
        verb: &str,
        namespace: &str,
        (group, version): (&str, &str),
        (resource, subresource, name): (&str, &str, &str),
        path: &str,
    ) -> RequestInfo {
        RequestInfo {
            is_resource_request: true,
            path: path.to_owned(),
            verb: verb.to_owned(),
            api_prefix: if group.is_empty() { "api" } else { "apis" }.to_owned(),
            api_group: group.to_owned(),
            api_version: version.to_owned(),
            namespace: namespace.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            parts: Vec::new(),
        }
    }

    /// checker_test.go's `attrs`: the user, their groups and the request.
    fn attrs(name: &str) -> (&'static str, Vec<String>, RequestInfo) {
        let tim = ("tim@k8s.io", strings(&["humans", "developers"]));
        let pod_path = "/api/v1/namespaces/default/pods/busybox";
        let rbac = ("rbac.authorization.k8s.io", "v1beta1");
        let (user, info) = match name {
            "namespaced" => (
                tim,
                resource_request(
                    "get",
                    "default",
                    ("", "v1"),
                    ("pods", "", "busybox"),
                    pod_path,
                ),
            ),
            "cluster" => (
                tim,
                resource_request(
                    "get",
                    "",
                    rbac,
                    ("clusterroles", "", "edit"),
                    "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit",
                ),
            ),
            "nonResource" => (
                tim,
                RequestInfo {
                    verb: "get".into(),
                    path: "/logs/kubelet.log".into(),
                    ..RequestInfo::default()
                },
            ),
            "subresource" => (
                tim,
                resource_request(
                    "get",
                    "default",
                    ("", "v1"),
                    ("pods", "log", "busybox"),
                    pod_path,
                ),
            ),
            "Unauthorized" => (
                ("", Vec::new()),
                resource_request(
                    "get",
                    "default",
                    ("", "v1"),
                    ("pods", "", "busybox"),
                    pod_path,
                ),
            ),
            "ClusterRoleUpdate" => (
                tim,
                resource_request(
                    "update",
                    "",
                    rbac,
                    ("clusterroles", "status", "somerole"),
                    "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/somerole",
                ),
            ),
            other => panic!("no request {other}"),
        };
        (user.0, user.1, info)
    }

    fn group_resources(group: &str, resources: &[&str], names: &[&str]) -> GroupResources {
        GroupResources {
            group: group.to_owned(),
            resources: strings(resources),
            resource_names: strings(names),
        }
    }

    /// checker_test.go's `rules`.
    fn rule(name: &str) -> PolicyRule {
        let with = |level, edit: &dyn Fn(&mut PolicyRule)| {
            let mut rule = PolicyRule::new(level);
            edit(&mut rule);
            rule
        };
        let get = |level, resources: Vec<GroupResources>| {
            with(level, &|r| {
                r.verbs = strings(&["get"]);
                r.resources = resources.clone();
            })
        };
        match name {
            "default" => PolicyRule::new(Metadata),
            "create" => with(Request, &|r| r.verbs = strings(&["create"])),
            "tims" => with(Metadata, &|r| r.users = strings(&["tim@k8s.io"])),
            "humans" => with(Metadata, &|r| r.user_groups = strings(&["humans"])),
            "serviceAccounts" => with(Request, &|r| {
                r.user_groups = strings(&["system:serviceaccounts"]);
            }),
            "getPods" => get(RequestResponse, vec![group_resources("", &["pods"], &[])]),
            "getPodLogs" => get(Request, vec![group_resources("", &["pods/log"], &[])]),
            "getPodWildcardMatching" => get(Request, vec![group_resources("", &["*"], &[])]),
            "getPodResourceWildcardMatching" => {
                get(Request, vec![group_resources("", &["*/log"], &[])])
            }
            "getPodSubResourceWildcardMatching" => {
                get(Request, vec![group_resources("", &["pods/*"], &[])])
            }
            "getClusterRoles" => with(RequestResponse, &|r| {
                r.verbs = strings(&["get"]);
                r.resources = vec![group_resources(
                    "rbac.authorization.k8s.io",
                    &["clusterroles"],
                    &[],
                )];
                r.namespaces = strings(&[""]);
            }),
            "getGroupWildCardMatchingWithSubresourceWildcardMatching" => {
                with(RequestResponse, &|r| {
                    r.verbs = strings(&["update"]);
                    r.resources = vec![group_resources("*", &["*/status"], &[])];
                })
            }
            "getLogs" => with(RequestResponse, &|r| {
                r.verbs = strings(&["get"]);
                r.non_resource_urls = strings(&["/logs*"]);
            }),
            "getMetrics" => with(Request, &|r| {
                r.verbs = strings(&["get"]);
                r.non_resource_urls = strings(&["/metrics"]);
            }),
            "clusterRoleEdit" => with(Request, &|r| {
                r.resources = vec![group_resources(
                    "rbac.authorization.k8s.io",
                    &["clusterroles"],
                    &["edit"],
                )];
            }),
            "omit RequestReceived" => with(Request, &|r| {
                r.omit_stages = stages(&[RequestReceived]);
            }),
            "only audit panic" => with(Request, &|r| {
                r.omit_stages = stages(&[RequestReceived, ResponseStarted, ResponseComplete]);
            }),
            other => panic!("no rule {other}"),
        }
    }

    /// checker_test.go's `test`: the policy of `rules` (by name) with `policy_stages`,
    /// evaluated for request `req`.
    fn check(req: &str, policy_stages: StageSet, rules: &[&str]) -> RequestAuditConfig {
        let policy = Policy {
            rules: rules.iter().map(|name| rule(name)).collect(),
            omit_stages: policy_stages,
            omit_managed_fields: false,
        };
        let (user, groups, info) = attrs(req);
        policy.evaluate(user, &groups, &info)
    }

    /// checker_test.go's `testAuditLevel`: (request, expected level, rules).
    const LEVEL_CASES: &[(&str, Level, &[&str])] = &[
        ("namespaced", Metadata, &["default"]),
        ("namespaced", Level::None, &["create"]),
        ("namespaced", Metadata, &["tims"]),
        ("namespaced", Metadata, &["humans"]),
        ("namespaced", Level::None, &["serviceAccounts"]),
        ("namespaced", RequestResponse, &["getPods"]),
        ("namespaced", Level::None, &["getClusterRoles"]),
        ("namespaced", Level::None, &["getLogs"]),
        ("namespaced", Level::None, &["getMetrics"]),
        (
            "namespaced",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "namespaced",
            RequestResponse,
            &["getMetrics", "getPods", "default"],
        ),
        ("namespaced", RequestResponse, &["getPodLogs", "getPods"]),
        ("cluster", Metadata, &["default"]),
        ("cluster", Level::None, &["create"]),
        ("cluster", Metadata, &["tims"]),
        ("cluster", Metadata, &["humans"]),
        ("cluster", Level::None, &["serviceAccounts"]),
        ("cluster", Level::None, &["getPods"]),
        ("cluster", RequestResponse, &["getClusterRoles"]),
        ("cluster", Request, &["clusterRoleEdit", "getClusterRoles"]),
        ("cluster", Level::None, &["getLogs"]),
        ("cluster", Level::None, &["getMetrics"]),
        (
            "cluster",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "cluster",
            RequestResponse,
            &["getMetrics", "getClusterRoles", "default"],
        ),
        ("cluster", Level::None, &["getPodLogs", "getPods"]),
        ("nonResource", Metadata, &["default"]),
        ("nonResource", Level::None, &["create"]),
        ("nonResource", Metadata, &["tims"]),
        ("nonResource", Metadata, &["humans"]),
        ("nonResource", Level::None, &["serviceAccounts"]),
        ("nonResource", Level::None, &["getPods"]),
        ("nonResource", Level::None, &["getClusterRoles"]),
        ("nonResource", RequestResponse, &["getLogs"]),
        ("nonResource", Level::None, &["getMetrics"]),
        (
            "nonResource",
            Metadata,
            &["getMetrics", "serviceAccounts", "default"],
        ),
        (
            "nonResource",
            RequestResponse,
            &["getLogs", "getClusterRoles", "default"],
        ),
        ("nonResource", Level::None, &["getPodLogs", "getPods"]),
        ("subresource", Request, &["getPodLogs", "getPods"]),
        ("subresource", Request, &["getPodWildcardMatching"]),
        ("subresource", Request, &["getPodResourceWildcardMatching"]),
        (
            "subresource",
            Request,
            &["getPodSubResourceWildcardMatching"],
        ),
        ("Unauthorized", Level::None, &["tims"]),
        ("Unauthorized", Metadata, &["tims", "default"]),
        ("Unauthorized", Level::None, &["humans"]),
        ("Unauthorized", Metadata, &["humans", "default"]),
        (
            "ClusterRoleUpdate",
            RequestResponse,
            &["getGroupWildCardMatchingWithSubresourceWildcardMatching"],
        ),
    ];

    /// `testAuditLevel`: none of these rules omits stages, so the policy's are what is left.
    fn check_levels(policy_stages: StageSet) {
        for &(req, level, rules) in LEVEL_CASES {
            let got = check(req, policy_stages, rules);
            assert_eq!(got.level, level, "request {req}, rules {rules:?}");
            assert_eq!(
                got.omit_stages, policy_stages,
                "request {req}, rules {rules:?}"
            );
        }
    }

    /// (request, expected level, expected omitted stages, rules).
    type StageCase = (
        &'static str,
        Level,
        &'static [Stage],
        &'static [&'static str],
    );

    const OMIT_RECEIVED: &[&str] = &["omit RequestReceived", "getPods", "default"];
    const ONLY_PANIC: &[&str] = &["only audit panic", "getPods", "default"];
    const ALL_BUT_PANIC: &[Stage] = &[RequestReceived, ResponseStarted, ResponseComplete];

    fn check_stages(policy_stages: StageSet, cases: &[StageCase]) {
        for &(req, level, omitted, rules) in cases {
            let got = check(req, policy_stages, rules);
            let expected = (level, stages(omitted));
            assert_eq!((got.level, got.omit_stages), expected, "{req} {rules:?}");
        }
    }

    /// `TestChecker`.
    #[test]
    fn checker() {
        check_levels(StageSet::EMPTY);
        let received: &[Stage] = &[RequestReceived];
        check_stages(
            StageSet::EMPTY,
            &[
                ("namespaced", Request, received, OMIT_RECEIVED),
                ("namespaced", Request, ALL_BUT_PANIC, ONLY_PANIC),
                ("cluster", Request, received, OMIT_RECEIVED),
                ("cluster", Request, ALL_BUT_PANIC, ONLY_PANIC),
                ("nonResource", Request, received, OMIT_RECEIVED),
                ("nonResource", Request, ALL_BUT_PANIC, ONLY_PANIC),
            ],
        );
    }

    /// `TestCheckerPolicyOmitStages`.
    #[test]
    fn checker_policy_omit_stages() {
        let both: &[Stage] = &[RequestReceived, ResponseStarted];
        check_levels(stages(both));
        check_stages(
            stages(both),
            &[
                ("namespaced", Request, both, OMIT_RECEIVED),
                ("namespaced", Request, ALL_BUT_PANIC, ONLY_PANIC),
                ("cluster", Request, both, OMIT_RECEIVED),
                ("cluster", Request, ALL_BUT_PANIC, ONLY_PANIC),
                (
                    "nonResource",
                    Metadata,
                    both,
                    &["default", "omit RequestReceived", "getPods"],
                ),
                ("nonResource", Request, ALL_BUT_PANIC, ONLY_PANIC),
            ],
        );
    }

    /// `TestUnionStages`.
    #[test]
    fn union_stages() {
        let cases: &[(&[Stage], &[Stage], &[Stage])] = &[
            (&[], &[], &[]),
            (&[RequestReceived], &[], &[RequestReceived]),
            (&[RequestReceived], &[RequestReceived], &[RequestReceived]),
            (
                &[RequestReceived],
                &[ResponseStarted],
                &[RequestReceived, ResponseStarted],
            ),
            (
                &[RequestReceived, RequestReceived],
                &[RequestReceived, RequestReceived],
                &[RequestReceived],
            ),
            (
                &[RequestReceived, ResponseStarted],
                &[Panic, RequestReceived],
                &[RequestReceived, ResponseStarted, Panic],
            ),
        ];
        for &(a, b, expected) in cases {
            let union = stages(a).union(stages(b));
            assert_eq!(union.iter().collect::<Vec<_>>(), expected, "{a:?} ∪ {b:?}");
        }
    }

    /// `TestOmitManagedFields`, plus the no-match case (the policy's value).
    #[test]
    fn omit_managed_fields() {
        let info = RequestInfo {
            verb: "get".into(),
            ..RequestInfo::default()
        };
        // (policy default, rule override, expected)
        let cases = [
            (false, None, false),
            (true, None, true),
            (true, Some(false), false),
            (false, Some(true), true),
        ];
        for (default, rule_value, expected) in cases {
            let mut rule = PolicyRule::new(RequestResponse);
            rule.verbs = strings(&["get"]);
            rule.omit_managed_fields = rule_value;
            let policy = Policy {
                rules: vec![rule],
                omit_managed_fields: default,
                ..Policy::default()
            };
            let got = policy.evaluate("", &[], &info);
            assert_eq!(
                got.omit_managed_fields, expected,
                "{default} {rule_value:?}"
            );
            let unmatched = RequestInfo {
                verb: "list".into(),
                ..RequestInfo::default()
            };
            let got = policy.evaluate("", &[], &unmatched);
            assert_eq!((got.level, got.omit_managed_fields), (Level::None, default));
        }
    }

    // ---- matching details beyond kube's tables --------------------------------------------

    /// The level of `info` (by tim) under a one-rule Metadata policy with `resources`.
    fn resource_level(resources: &[&str], names: &[&str], info: &RequestInfo) -> Level {
        let mut rule = PolicyRule::new(Metadata);
        rule.resources = vec![group_resources("", resources, names)];
        let policy = Policy {
            rules: vec![rule],
            ..Policy::default()
        };
        policy.evaluate("tim", &[], info).level
    }

    #[test]
    fn resource_patterns() {
        let (_, _, pod) = attrs("namespaced");
        let (_, _, log) = attrs("subresource");
        // (resources, names, matches pod, matches pods/log)
        let cases: &[(&[&str], &[&str], bool, bool)] = &[
            (&["pods"], &[], true, false),
            (&["pods/log"], &[], false, true),
            (&["*"], &[], true, true),
            (&["*/log"], &[], false, true),
            (&["*/exec"], &[], false, false),
            // kube's `resource/*` also matches the resource itself.
            (&["pods/*"], &[], true, true),
            (&["services/*"], &[], false, false),
            (&["pods", "pods/log"], &[], true, true),
            (&["pods"], &["busybox"], true, false),
            (&["pods", "pods/log"], &["other"], false, false),
            (&["pods/log"], &["busybox", "other"], false, true),
            (&["pods/log/extra"], &[], false, false),
        ];
        for &(resources, names, on_pod, on_log) in cases {
            let expect = |matched| if matched { Metadata } else { Level::None };
            assert_eq!(
                resource_level(resources, names, &pod),
                expect(on_pod),
                "{resources:?} {names:?} pods"
            );
            assert_eq!(
                resource_level(resources, names, &log),
                expect(on_log),
                "{resources:?} {names:?} log"
            );
        }
    }

    #[test]
    fn groups_and_namespaces() {
        let (_, _, pod) = attrs("namespaced");
        let (_, _, cluster) = attrs("cluster");
        let (_, _, non_resource) = attrs("nonResource");
        let level = |edit: &dyn Fn(&mut PolicyRule), info: &RequestInfo| {
            let mut rule = PolicyRule::new(Metadata);
            edit(&mut rule);
            let policy = Policy {
                rules: vec![rule],
                ..Policy::default()
            };
            policy.evaluate("tim", &[], info).level
        };
        // A group with no resources matches every resource of the group only.
        let core = |r: &mut PolicyRule| r.resources = vec![group_resources("", &[], &[])];
        assert_eq!(level(&core, &pod), Metadata);
        assert_eq!(level(&core, &cluster), Level::None);
        let any = |r: &mut PolicyRule| r.resources = vec![group_resources("*", &["*"], &[])];
        assert_eq!(level(&any, &pod), Metadata);
        assert_eq!(level(&any, &cluster), Metadata);
        assert_eq!(level(&any, &non_resource), Level::None);
        // `namespaces: [""]` selects cluster-scoped requests; namespaces never match
        // non-resource requests.
        let cluster_scoped = |r: &mut PolicyRule| r.namespaces = strings(&[""]);
        assert_eq!(level(&cluster_scoped, &cluster), Metadata);
        assert_eq!(level(&cluster_scoped, &pod), Level::None);
        assert_eq!(level(&cluster_scoped, &non_resource), Level::None);
        let default_ns = |r: &mut PolicyRule| r.namespaces = strings(&["default"]);
        assert_eq!(level(&default_ns, &pod), Metadata);
        assert_eq!(level(&default_ns, &cluster), Level::None);
    }

    #[test]
    fn non_resource_urls() {
        let at = |path: &str, is_resource_request: bool| RequestInfo {
            verb: "get".into(),
            path: path.into(),
            is_resource_request,
            ..RequestInfo::default()
        };
        // (spec, path, matches)
        let cases = [
            ("*", "/anything", true),
            ("/healthz", "/healthz", true),
            ("/healthz", "/healthz/etcd", false),
            ("/healthz*", "/healthz", true),
            ("/healthz*", "/healthz/etcd", true),
            ("/healthz*", "/livez", false),
            ("/healthz/*", "/healthz", false),
            ("/", "/", true),
            ("/", "/healthz", false),
        ];
        for (spec, path, matched) in cases {
            let mut rule = PolicyRule::new(Request);
            rule.non_resource_urls = strings(&[spec]);
            let policy = Policy {
                rules: vec![rule],
                ..Policy::default()
            };
            let got = policy.evaluate("tim", &[], &at(path, false)).level;
            assert_eq!(got == Request, matched, "{spec} on {path}");
            // Never a resource request, whatever its path.
            assert_eq!(
                policy.evaluate("tim", &[], &at(path, true)).level,
                Level::None
            );
        }
    }

    #[test]
    fn users_and_groups() {
        let (_, _, pod) = attrs("namespaced");
        let mut by_user = PolicyRule::new(Metadata);
        by_user.users = strings(&["", "alice"]);
        let mut by_group = PolicyRule::new(Request);
        by_group.user_groups = strings(&["admins", "ops"]);
        let policy = Policy {
            rules: vec![by_user, by_group],
            ..Policy::default()
        };
        let level =
            |user: &str, groups: &[&str]| policy.evaluate(user, &strings(groups), &pod).level;
        assert_eq!(level("alice", &[]), Metadata);
        assert_eq!(level("bob", &["dev", "ops"]), Request);
        assert_eq!(level("bob", &["dev"]), Level::None);
        // An unauthenticated request (no user) matches neither, even a listed "".
        assert_eq!(level("", &["ops"]), Level::None);
    }

    #[test]
    fn level_helpers() {
        let rows = [
            (Level::None, true, false, false),
            (Metadata, false, false, false),
            (Request, false, true, false),
            (RequestResponse, false, true, true),
        ];
        for (level, none, request_body, response_body) in rows {
            assert_eq!(level.is_none(), none, "{level:?}");
            assert_eq!(level.records_request_body(), request_body, "{level:?}");
            assert_eq!(level.records_response_body(), response_body, "{level:?}");
        }
        assert_eq!(
            Level::ALL.map(Level::as_str),
            ["None", "Metadata", "Request", "RequestResponse"]
        );
        let (user, groups, info) = attrs("nonResource");
        let config = Policy::at_level(Request).evaluate(user, &groups, &info);
        assert_eq!(
            config,
            RequestAuditConfig {
                level: Request,
                omit_stages: StageSet::EMPTY,
                omit_managed_fields: false
            }
        );
    }

    #[test]
    fn stage_set() {
        let mut set = StageSet::EMPTY;
        assert!(set.is_empty());
        set.insert(Panic);
        set.insert(RequestReceived);
        set.insert(Panic);
        assert!(set.contains(Panic) && set.contains(RequestReceived));
        assert!(!set.contains(ResponseStarted) && !set.contains(ResponseComplete));
        assert_eq!(set.iter().collect::<Vec<_>>(), [RequestReceived, Panic]);
        assert_eq!(stages(&Stage::ALL).iter().count(), 4);
        assert_eq!(
            Stage::ALL.map(Stage::as_str),
            [
                "RequestReceived",
                "ResponseStarted",
                "ResponseComplete",
                "Panic"
            ]
        );
    }

    // ---- reader_test.go and parsing -------------------------------------------------------

    fn parsed(yaml: &str) -> Policy {
        parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(yaml: &str) -> Vec<String> {
        parse(yaml.as_bytes())
            .expect_err("the policy should be refused")
            .problems()
            .to_vec()
    }

    /// The problems of a policy with `rules`.
    fn rule_problems(rules: &str) -> Vec<String> {
        problems(&format!("{HEAD}rules:\n{rules}"))
    }

    /// `TestParser` (reader_test.go's `policyDefPattern` and `expectedPolicy`).
    #[test]
    fn parser() {
        let policy = parsed(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs:
      - /healthz*
      - /version
  - level: RequestResponse
    users: ["tim"]
    userGroups: ["testers", "developers"]
    verbs: ["patch", "delete", "create"]
    resources:
      - group: ""
      - group: "rbac.authorization.k8s.io"
        resources: ["clusterroles", "clusterrolebindings"]
    namespaces: ["default", "kube-system"]
  - level: Metadata
"#,
        );
        let mut none = PolicyRule::new(Level::None);
        none.non_resource_urls = strings(&["/healthz*", "/version"]);
        let mut specific = PolicyRule::new(RequestResponse);
        specific.users = strings(&["tim"]);
        specific.user_groups = strings(&["testers", "developers"]);
        specific.verbs = strings(&["patch", "delete", "create"]);
        specific.resources = vec![
            GroupResources::default(),
            group_resources(
                "rbac.authorization.k8s.io",
                &["clusterroles", "clusterrolebindings"],
                &[],
            ),
        ];
        specific.namespaces = strings(&["default", "kube-system"]);
        let expected = Policy {
            rules: vec![none, specific, PolicyRule::new(Metadata)],
            ..Policy::default()
        };
        assert_eq!(policy, expected);
    }

    #[test]
    fn every_field() {
        let policy = parsed(
            r#"
apiVersion: audit.k8s.io/v1
kind: Policy
metadata:
  name: audit
  labels: {team: platform}
  annotations: {note: "kept out of the policy"}
  creationTimestamp: null
omitStages: [RequestReceived, Panic]
omitManagedFields: true
rules:
  - level: Request
    users: [alice]
    userGroups: [ops]
    verbs: [get, list]
    resources:
      - group: apps
        resources: [deployments, deployments/scale]
        resourceNames: [web]
    namespaces: [prod]
    omitStages: [ResponseStarted]
    omitManagedFields: false
  - level: Metadata
    nonResourceURLs: ["/metrics", "/logs*", "*"]
    omitManagedFields: true
"#,
        );
        assert_eq!(policy.omit_stages, stages(&[RequestReceived, Panic]));
        assert!(policy.omit_managed_fields);
        let mut first = PolicyRule::new(Request);
        first.users = strings(&["alice"]);
        first.user_groups = strings(&["ops"]);
        first.verbs = strings(&["get", "list"]);
        first.resources = vec![group_resources(
            "apps",
            &["deployments", "deployments/scale"],
            &["web"],
        )];
        first.namespaces = strings(&["prod"]);
        first.omit_stages = stages(&[ResponseStarted]);
        first.omit_managed_fields = Some(false);
        let mut second = PolicyRule::new(Metadata);
        second.non_resource_urls = strings(&["/metrics", "/logs*", "*"]);
        second.omit_managed_fields = Some(true);
        assert_eq!(policy.rules, [first, second]);

        // The rule's stages join the policy's; its omitManagedFields wins.
        let scale = resource_request(
            "get",
            "prod",
            ("apps", "v1"),
            ("deployments", "scale", "web"),
            "/apis/apps/v1/namespaces/prod/deployments/web/scale",
        );
        let config = policy.evaluate("alice", &strings(&["ops"]), &scale);
        assert_eq!(
            config,
            RequestAuditConfig {
                level: Request,
                omit_stages: stages(&[RequestReceived, ResponseStarted, Panic]),
                omit_managed_fields: false,
            }
        );
    }

    #[test]
    fn json_is_yaml() {
        let policy = parsed(
            r#"{"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                "rules": [{"level": "Metadata", "omitStages": ["RequestReceived"]}]}"#,
        );
        let mut rule = PolicyRule::new(Metadata);
        rule.omit_stages = stages(&[RequestReceived]);
        assert_eq!(policy.rules, [rule]);
    }

    /// `TestParsePolicyWithUnknownField` expects kube to accept (leniently) what it warns
    /// about; the proxy refuses unknown fields anywhere.
    #[test]
    fn unknown_fields_are_refused() {
        let cases = [
            (
                "rules:\n- level: None\n  resources:\n  - group: coordination.k8s.io\n    resources: [leases]\n    verbs: [watch, get, list]\n",
                "verbs",
            ),
            ("rules:\n- level: None\n  level2: None\n", "level2"),
            ("rules:\n- level: None\nrule: []\n", "rule"),
            ("metadata:\n  nam: x\nrules:\n- level: None\n", "nam"),
        ];
        for (body, field) in cases {
            let problems = problems(&format!("{HEAD}{body}"));
            assert_eq!(problems.len(), 1, "{problems:?}");
            let unknown = format!("unknown field `{field}`");
            assert!(problems[0].contains(&unknown), "{field}: {problems:?}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let problems = problems(&format!("{HEAD}rules:\n- level: None\n  level: Metadata\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("duplicate mapping key: level"),
            "{problems:?}"
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let problems = problems(&format!("{HEAD}rules:\n- level: None\n  users: alice\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problems = problems_of_top("omitManagedFields: maybe\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("invalid boolean"), "{problems:?}");
    }

    fn problems_of_top(extra: &str) -> Vec<String> {
        problems(&format!("{HEAD}{extra}rules:\n- level: None\n"))
    }

    /// `TestParsePolicyWithNoVersionOrKind`, and versions kube no longer reads.
    #[test]
    fn api_version_and_kind() {
        let rules = "rules:\n- level: None\n";
        assert_eq!(
            problems(rules),
            [
                r#"apiVersion: Unsupported value: "": supported values: "audit.k8s.io/v1""#,
                r#"kind: Unsupported value: "": supported values: "Policy""#,
            ]
        );
        for version in ["audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1", "v1"] {
            assert_eq!(
                problems(&format!("apiVersion: {version}\nkind: Policy\n{rules}")),
                [format!(
                    r#"apiVersion: Unsupported value: "{version}": supported values: "audit.k8s.io/v1""#
                )]
            );
        }
        assert_eq!(
            problems(&format!(
                "apiVersion: audit.k8s.io/v1\nkind: Event\n{rules}"
            )),
            [r#"kind: Unsupported value: "Event": supported values: "Policy""#]
        );
    }

    /// `TestPolicyCntCheck`.
    #[test]
    fn a_policy_needs_rules() {
        let no_rules = [
            r#"rules: Required value: a policy needs at least one rule (kube-apiserver: "loaded illegal policy with 0 rules")"#,
        ];
        assert_eq!(problems(HEAD), no_rules);
        assert_eq!(problems(&format!("{HEAD}rules: []\n")), no_rules);
        assert_eq!(problems(&format!("{HEAD}omitStages: [Panic]\n")), no_rules);
        assert_eq!(problems(""), ["the file is empty"]);
        assert_eq!(problems(" \n\t\n"), ["the file is empty"]);
    }

    // ---- validation_test.go -----------------------------------------------------------------

    /// `TestValidatePolicy`'s `validRules`, as YAML.
    const VALID_RULES: [&str; 5] = [
        "- level: Metadata\n",
        "- level: None\n  userGroups: [\"system:serviceaccounts\", \"system:nodes\"]\n",
        "- level: RequestResponse\n  verbs: [get]\n  resources:\n  - group: rbac.authorization.k8s.io\n    resources: [roles, rolebindings]\n  namespaces: [kube-system]\n",
        "- level: Metadata\n  userGroups: [developers]\n  nonResourceURLs: [\"/logs*\", \"/healthz*\", \"/metrics\", \"*\"]\n",
        "- level: Metadata\n  omitStages: [RequestReceived]\n",
    ];

    #[test]
    fn validate_policy_success_cases() {
        for rule in VALID_RULES {
            let policy = parsed(&format!("{HEAD}rules:\n{rule}"));
            assert_eq!(policy.rules.len(), 1, "{rule}");
        }
        let all = parsed(&format!("{HEAD}rules:\n{}", VALID_RULES.concat()));
        assert_eq!(all.rules.len(), VALID_RULES.len());
        // Kube also lists a policy of only omitStages as valid; its reader then refuses it
        // for having no rules (see `a_policy_needs_rules`).
        let policy = parsed(&format!(
            "{HEAD}omitStages: [RequestReceived]\nrules:\n- level: None\n"
        ));
        assert_eq!(policy.omit_stages, stages(&[RequestReceived]));
    }

    const SUPPORTED_LEVELS: &str =
        r#"supported values: "None", "Metadata", "Request", "RequestResponse""#;
    const ALLOWED_STAGES: &str =
        "allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic";
    const RFC_1123: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
         alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
         character";

    /// `TestValidatePolicy`'s `invalidRules`, each with the exact errors.
    #[test]
    fn validate_policy_error_cases() {
        let both = r#"rules[0].nonResourceURLs: Invalid value: ["/logs*"]: rules cannot apply to both regular resources and non-resource URLs"#;
        let leading_slash = "non-resource URL rules must begin with a '/' character";
        let final_star = "non-resource URL wildcards '*' must be the final character of the rule";
        let cases: Vec<(&str, Vec<String>)> = vec![
            // Empty rule (missing level).
            ("- {}\n", vec!["rules[0].level: Required value".into()]),
            (
                "- verbs: [get]\n  resources:\n  - resources: [secrets]\n  namespaces: [kube-system]\n",
                vec!["rules[0].level: Required value".into()],
            ),
            (
                "- level: FooBar\n",
                vec![format!(r#"rules[0].level: Unsupported value: "FooBar": {SUPPORTED_LEVELS}"#)],
            ),
            (
                "- level: Metadata\n  namespaces: [default]\n  nonResourceURLs: [\"/logs*\"]\n",
                vec![both.into()],
            ),
            (
                "- level: Metadata\n  resources:\n  - resources: [secrets]\n  nonResourceURLs: [\"/logs*\"]\n",
                vec![both.into()],
            ),
            (
                "- level: Metadata\n  resources:\n  - group: rbac.authorization.k8s.io/v1beta1\n    resources: [roles]\n",
                vec![format!(
                    r#"rules[0].resources[0].group: Invalid value: "rbac.authorization.k8s.io/v1beta1": {RFC_1123}"#
                )],
            ),
            (
                "- level: Metadata\n  nonResourceURLs: [logs, \"/healthz*\"]\n",
                vec![format!(r#"rules[0].nonResourceURLs[0]: Invalid value: "logs": {leading_slash}"#)],
            ),
            (
                "- level: Metadata\n  nonResourceURLs: [\"\", \"/healthz*\"]\n",
                vec![format!(r#"rules[0].nonResourceURLs[0]: Invalid value: "": {leading_slash}"#)],
            ),
            (
                "- level: Metadata\n  nonResourceURLs: [\"/logs/*/*\", /metrics]\n",
                vec![format!(r#"rules[0].nonResourceURLs[0]: Invalid value: "/logs/*/*": {final_star}"#)],
            ),
            (
                "- level: Metadata\n  nonResourceURLs: [\"/logs/*.log\", /metrics]\n",
                vec![format!(r#"rules[0].nonResourceURLs[0]: Invalid value: "/logs/*.log": {final_star}"#)],
            ),
            (
                "- level: Metadata\n  verbs: [get]\n  resources:\n  - resourceNames: [leader]\n  namespaces: [kube-system]\n",
                vec![r#"rules[0].resources[0].resourceNames: Invalid value: ["leader"]: using resourceNames requires at least one resource"#.into()],
            ),
            (
                "- level: Metadata\n  omitStages: [foo]\n",
                vec![format!(r#"rules[0].omitStages[0]: Invalid value: "foo": {ALLOWED_STAGES}"#)],
            ),
        ];
        for (rules, expected) in cases {
            assert_eq!(rule_problems(rules), expected, "{rules}");
        }
        // Multiple rules: the valid ones and an empty one.
        assert_eq!(
            rule_problems(&format!("{}- {{}}\n", VALID_RULES.concat())),
            ["rules[5].level: Required value"]
        );
        // Invalid omitStages in the policy.
        assert_eq!(
            problems_of_top("omitStages: [foo]\n"),
            [format!(
                r#"omitStages[0]: Invalid value: "foo": {ALLOWED_STAGES}"#
            )]
        );
    }

    #[test]
    fn more_validation() {
        // Group "*" is every group (Kubernetes 1.36); "" the core group.
        let policy = parsed(&format!(
            "{HEAD}rules:\n- level: Metadata\n  resources:\n  - group: \"*\"\n  - group: \"\"\n    resources: [pods]\n"
        ));
        assert_eq!(policy.rules[0].resources[0].group, "*");
        let long = format!("{}.io", "a".repeat(251));
        assert_eq!(
            rule_problems(&format!(
                "- level: Metadata\n  resources:\n  - group: {long}\n"
            )),
            [format!(
                r#"rules[0].resources[0].group: Invalid value: "{long}": must be no more than 253 characters"#
            )]
        );
        // One URL breaking both rules; a multi-byte last character is not a slicing hazard.
        assert_eq!(
            rule_problems("- level: Metadata\n  nonResourceURLs: [\"logs*x\", \"/é\", \"/*é\"]\n"),
            [
                r#"rules[0].nonResourceURLs[0]: Invalid value: "logs*x": non-resource URL rules must begin with a '/' character"#,
                r#"rules[0].nonResourceURLs[0]: Invalid value: "logs*x": non-resource URL wildcards '*' must be the final character of the rule"#,
                r#"rules[0].nonResourceURLs[2]: Invalid value: "/*é": non-resource URL wildcards '*' must be the final character of the rule"#,
            ]
        );
        // Level names are case-sensitive.
        assert_eq!(
            rule_problems("- level: metadata\n"),
            [format!(
                r#"rules[0].level: Unsupported value: "metadata": {SUPPORTED_LEVELS}"#
            )]
        );
    }

    /// Everything wrong is reported at once, in file order, and nothing is returned.
    #[test]
    fn every_problem_at_once() {
        let yaml = "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nomitStages: [Never]\nrules:\n\
                    - level: Metadata\n\
                    - level: Verbose\n  omitStages: [Panic, Sometimes]\n\
                    - level: None\n  namespaces: [\"\"]\n  nonResourceURLs: [healthz]\n";
        assert_eq!(
            problems(yaml),
            [
                r#"apiVersion: Unsupported value: "audit.k8s.io/v1beta1": supported values: "audit.k8s.io/v1""#.to_owned(),
                format!(r#"omitStages[0]: Invalid value: "Never": {ALLOWED_STAGES}"#),
                format!(r#"rules[1].level: Unsupported value: "Verbose": {SUPPORTED_LEVELS}"#),
                format!(r#"rules[1].omitStages[1]: Invalid value: "Sometimes": {ALLOWED_STAGES}"#),
                r#"rules[2].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL rules must begin with a '/' character"#.to_owned(),
                r#"rules[2].nonResourceURLs: Invalid value: ["healthz"]: rules cannot apply to both regular resources and non-resource URLs"#.to_owned(),
            ]
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("policy.yaml");
        std::fs::write(&good, format!("{HEAD}rules:\n- level: Metadata\n")).unwrap();
        assert_eq!(load(&good).unwrap(), Policy::at_level(Metadata));

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, format!("{HEAD}rules:\n- level: Verbose\n- {{}}\n")).unwrap();
        let error = load(&bad).unwrap_err();
        assert_eq!(error.path(), Some(bad.as_path()));
        assert_eq!(
            error.to_string(),
            format!(
                "audit policy {0}: rules[0].level: Unsupported value: \"Verbose\": {SUPPORTED_LEVELS}\n\
                 audit policy {0}: rules[1].level: Required value",
                bad.display()
            )
        );

        let missing = dir.path().join("missing.yaml");
        let error = load(&missing).unwrap_err();
        assert_eq!(error.problems().len(), 1);
        assert!(
            error.to_string().starts_with(&format!(
                "audit policy {}: cannot read: ",
                missing.display()
            )),
            "{error}"
        );
        assert_eq!(
            parse(b"kind: Policy\nrules:\n- level: None\n")
                .unwrap_err()
                .to_string(),
            r#"audit policy: apiVersion: Unsupported value: "": supported values: "audit.k8s.io/v1""#
        );
    }
}
