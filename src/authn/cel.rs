//! CEL for claim mappings and validation rules, as kube-apiserver's structured authentication
//! configuration uses it (`pkg/authentication/cel/compile.go`, k8s-semantics §2.3).
//!
//! The only module that touches the `cel` crate (minor version pinned; every 0.x minor breaks its
//! API). Two environments, as in kube-apiserver:
//! - **claims**: the variable `claims`, the verified token's payload as a `map(string, dyn)`. Every
//!   JSON number is a CEL `double` (kube unmarshals into Go `any`), so `int(claims.x)` is needed
//!   for integers; a missing key is an evaluation error (`has(claims.x)` tests for it).
//! - **user**: the variable `user`, `{username: string, uid: string, groups: list(string),
//!   extra: map(string, list(string))}` of the mapped user (user validation rules).
//!
//! Functions: the CEL standard library with its macros (`has`, `all`, `exists`, `exists_one`,
//! `map`, `filter`), optionals (`claims.?x.orValue(…)`, `claims[?"k"]`), the strings extension
//! (`split`, `lowerAscii`, `upperAscii`, `replace`, `substring`, `trim`, `join`, `indexOf`,
//! `format`, …), the lists extension, and `sets.contains` / `sets.equivalent` /
//! `sets.intersects` (cel-go's `ext.Sets`). kube's Kubernetes-specific libraries (`url`, `ip`,
//! `cidr`, `quantity`, `semver`, regex `find`), `timestamp`/`duration`, `cel.bind` and
//! two-variable comprehensions are not available: an expression using them is a load error.
//!
//! Field names with `.`, `-`, `/` or `__`, and CEL keywords, are written escaped as kube
//! defines (`pkg/cel/escaping.go`): `claims.kubernetes__dot__io.namespace` reads the claim
//! `kubernetes.io`. kube unescapes on every map lookup; here the escapes in field selections and
//! in string-literal indexes are resolved when the expression is compiled (a key computed at
//! run time is used as is).
//!
//! Compiling parses and checks what can be checked without a type checker (which the crate
//! lacks): every identifier is `claims`/`user` or a comprehension variable, every function
//! exists, and validation rules do not visibly yield a non-bool. Result types are checked on
//! every evaluation.
//!
//! Bounded work: kube-apiserver caps each evaluation at a CEL cost of 1,000,000. The crate has no
//! cost accounting, so the work is bounded here: the token is at most 16 KiB
//! ([`crate::authn::jws::MAX_TOKEN_BYTES`]); its claims are refused before any expression runs
//! when they hold more than [`MAX_CLAIM_VALUES`] JSON values or nest deeper than
//! [`MAX_CLAIM_DEPTH`]; and each comprehension step (an element visited by `all`, `exists`,
//! `map`, `filter`, …, nested ones included) is charged to a budget of
//! [`MAX_COMPREHENSION_STEPS`] per evaluation, exhausting which fails the evaluation (and so
//! refuses the token). The charge is a call the compiler adds to every comprehension.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue,
};
use cel::common::types::{CelBool, CelString, DYN_TYPE, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError};

/// What an expression evaluates to (the `cel` crate's value; read it with the `expect_*`
/// functions below).
pub use cel::Value;
use serde_json::Value as Json;

use super::UserInfo;

/// The variable of claim mappings and claim validation rules.
pub const CLAIMS_VARIABLE: &str = "claims";
/// The variable of user validation rules.
pub const USER_VARIABLE: &str = "user";

/// Most JSON values (objects, arrays and scalars, counted recursively) a token's claims may hold
/// for expressions to run on them. A 16 KiB token holds a few thousand at most; real ID tokens
/// (hundreds of groups included) hold far fewer.
pub const MAX_CLAIM_VALUES: usize = 4096;
/// Deepest nesting of objects and arrays in the claims expressions may run on.
pub const MAX_CLAIM_DEPTH: usize = 32;
/// Comprehension steps (elements visited by `all`, `exists`, `map`, `filter`, …, nested ones
/// included) one evaluation may take. One pass over the largest allowed claims takes at most
/// [`MAX_CLAIM_VALUES`]; nested passes over large claims exhaust it quickly.
pub const MAX_COMPREHENSION_STEPS: u64 = 100_000;

/// The function the compiler wraps around a part of every comprehension that runs once per
/// step; it charges one step and passes its argument through. Its name cannot be written in
/// CEL source.
const CHARGE_STEP: &str = "@kube_oidc_proxy_charge_step";

thread_local! {
    /// Steps left in the evaluation running on this thread.
    static STEPS_LEFT: Cell<u64> = const { Cell::new(MAX_COMPREHENSION_STEPS) };
    /// Whether the evaluation on this thread ran out of steps (even if an `||` swallowed the
    /// error).
    static STEPS_EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Which variable an expression sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// `claims`: claim mappings, extra mappings, claim validation rules.
    Claims,
    /// `user`: user validation rules.
    User,
}

impl Variable {
    /// The variable's name in expressions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Claims => CLAIMS_VARIABLE,
            Self::User => USER_VARIABLE,
        }
    }
}

/// What an expression must evaluate to, checked at load time where the expression's shape
/// shows its type, and on every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Anything (mappings; their result is checked by the caller).
    Any,
    /// A `bool` (claim and user validation rules).
    Bool,
}

/// Why an expression could not be compiled. Becomes a load error naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The text is not a CEL expression.
    #[error("compilation failed: {0}")]
    Syntax(String),
    /// An identifier or function that the environment does not declare.
    #[error("compilation failed: undeclared reference to '{0}'")]
    UndeclaredReference(String),
    /// A CEL feature this proxy does not offer.
    #[error("compilation failed: {0} is not supported")]
    Unsupported(&'static str),
    /// A validation rule whose result is visibly not a bool.
    #[error("must evaluate to bool")]
    NotBool,
}

/// Why evaluating an expression failed. Any such failure refuses the token, as in kube-apiserver.
/// Messages name types, keys and the expression, never claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// CEL reported an error (a missing key, no matching overload, division by zero, …).
    #[error("{0}")]
    Execution(String),
    /// The claims are larger or deeper than expressions may run on.
    #[error(
        "claims hold more than {MAX_CLAIM_VALUES} values or nest deeper than {MAX_CLAIM_DEPTH}"
    )]
    ClaimsTooLarge,
    /// The evaluation took more than [`MAX_COMPREHENSION_STEPS`] comprehension steps.
    #[error("evaluation exceeded {MAX_COMPREHENSION_STEPS} comprehension steps")]
    TooExpensive,
    /// The result does not have the type the field needs.
    #[error("{0}")]
    WrongResultType(&'static str),
}

/// A compiled expression, shareable across threads. Equal when the source and variable are.
#[derive(Clone)]
pub struct Expression {
    source: Arc<str>,
    variable: Variable,
    ast: Arc<IdedExpr>,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.variable == other.variable
    }
}

impl Eq for Expression {}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// The environment: the standard library and macros, optionals, the strings and lists
/// extensions, and the sets functions. Built once.
static ENVIRONMENT: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension registers once");
    env.add_extension(cel::extensions::lists)
        .expect("lists extension registers once");
    env.add_extension(sets_extension)
        .expect("sets extension registers once");
    env.add_overload(CHARGE_STEP, CHARGE_STEP, vec![DYN_TYPE], charge_step)
        .expect("the step charge registers once");
    Arc::new(env)
});

/// Compiles `source` for `variable`: parses it (expanding macros), resolves kube's identifier
/// escapes, and checks identifiers, functions, nesting and (for rules) the result type.
pub fn compile(
    source: &str,
    variable: Variable,
    result: ResultKind,
) -> Result<Expression, CompileError> {
    let mut ast = ENVIRONMENT
        .compile(source)
        .map_err(|e| CompileError::Syntax(one_line(&e.to_string())))?
        .expression()
        .clone();
    unescape_fields(&mut ast);
    let mut scope = vec![variable.name().to_owned()];
    check(&ast, &mut scope)?;
    if result == ResultKind::Bool && static_kind(&ast).is_some_and(|kind| kind != StaticKind::Bool)
    {
        return Err(CompileError::NotBool);
    }
    charge_comprehension_steps(&mut ast);
    Ok(Expression {
        source: source.into(),
        variable,
        ast: Arc::new(ast),
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Expression {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression selects `claims.<field>` anywhere (`claims.f`, `has(claims.f)`,
    /// `claims.?f`), as kube-apiserver's validation looks for `claims.email` and
    /// `claims.email_verified` (validation.go `hasSelectExp`).
    pub fn selects_claim(&self, field: &str) -> bool {
        selects(&self.ast, CLAIMS_VARIABLE, field)
    }

    /// Evaluates the expression against `input`, which must be for this expression's variable.
    pub fn evaluate(&self, input: &Input) -> Result<Value, EvalError> {
        debug_assert_eq!(input.variable, self.variable);
        let mut context = Context::with_env(ENVIRONMENT.clone());
        context.add_variable_from_value(self.variable.name(), input.value.clone());
        STEPS_LEFT.set(MAX_COMPREHENSION_STEPS);
        STEPS_EXHAUSTED.set(false);
        let result = Value::resolve(&self.ast, &context);
        if STEPS_EXHAUSTED.replace(false) {
            return Err(EvalError::TooExpensive);
        }
        result.map_err(|e| EvalError::Execution(describe(&e)))
    }
}

/// A variable's value, converted once and shared by every expression evaluated on it.
#[derive(Debug, Clone)]
pub struct Input {
    variable: Variable,
    value: Value,
}

impl Input {
    /// The `claims` of a verified token. Refused when larger than [`MAX_CLAIM_VALUES`] values or
    /// deeper than [`MAX_CLAIM_DEPTH`].
    pub fn claims(claims: &serde_json::Map<String, Json>) -> Result<Self, EvalError> {
        let mut budget = MAX_CLAIM_VALUES;
        let value = object_to_cel(claims, 0, &mut budget)?;
        Ok(Self {
            variable: Variable::Claims,
            value,
        })
    }

    /// The `user` of user validation rules: empty fields are `""`, `[]` and `{}`, as kube fills
    /// them (`convertUserInfoToUnstructured`).
    pub fn user(user: &UserInfo) -> Self {
        let string = |s: &str| Value::String(Arc::new(s.to_owned()));
        let strings =
            |list: &[String]| Value::List(Arc::new(list.iter().map(|s| string(s)).collect()));
        let extra: HashMap<Key, Value> = user
            .extra
            .iter()
            .map(|(key, values)| (Key::String(Arc::new(key.clone())), strings(values)))
            .collect();
        let fields: HashMap<Key, Value> = [
            ("username", string(&user.username)),
            ("uid", string(user.uid.as_deref().unwrap_or_default())),
            ("groups", strings(&user.groups)),
            (
                "extra",
                Value::Map(Map {
                    map: Arc::new(extra),
                }),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
        .collect();
        Self {
            variable: Variable::User,
            value: Value::Map(Map {
                map: Arc::new(fields),
            }),
        }
    }
}

fn spend(budget: &mut usize, depth: usize) -> Result<(), EvalError> {
    if *budget == 0 || depth > MAX_CLAIM_DEPTH {
        return Err(EvalError::ClaimsTooLarge);
    }
    *budget -= 1;
    Ok(())
}

fn object_to_cel(
    object: &serde_json::Map<String, Json>,
    depth: usize,
    budget: &mut usize,
) -> Result<Value, EvalError> {
    spend(budget, depth)?;
    let mut map = HashMap::with_capacity(object.len());
    for (key, value) in object {
        map.insert(
            Key::String(Arc::new(key.clone())),
            json_to_cel(value, depth + 1, budget)?,
        );
    }
    Ok(Value::Map(Map { map: Arc::new(map) }))
}

/// JSON as kube-apiserver hands it to CEL: numbers are doubles (Go's `json.Unmarshal` into
/// `any`), objects are maps with string keys.
fn json_to_cel(value: &Json, depth: usize, budget: &mut usize) -> Result<Value, EvalError> {
    Ok(match value {
        Json::Object(object) => return object_to_cel(object, depth, budget),
        Json::Array(items) => {
            spend(budget, depth)?;
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                list.push(json_to_cel(item, depth + 1, budget)?);
            }
            Value::List(Arc::new(list))
        }
        scalar => {
            spend(budget, depth)?;
            match scalar {
                Json::Null => Value::Null,
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                Json::String(s) => Value::String(Arc::new(s.clone())),
                Json::Array(_) | Json::Object(_) => unreachable!("handled above"),
            }
        }
    })
}

/// A result that must be a string (username and uid expressions).
pub fn expect_string(value: Value, what: &'static str) -> Result<String, EvalError> {
    match value {
        Value::String(s) => Ok(s.as_ref().clone()),
        _ => Err(EvalError::WrongResultType(what)),
    }
}

/// A result that must be a bool (validation rules): kube's `validation expression must return
/// a boolean`.
pub fn expect_bool(value: Value) -> Result<bool, EvalError> {
    match value {
        Value::Bool(b) => Ok(b),
        _ => Err(EvalError::WrongResultType(
            "validation expression must return a boolean",
        )),
    }
}

/// A groups or extra result, as kube's `convertCELValueToStringList`: a string or a list of
/// strings; `""`, `[]` and `null` mean none; empty strings in a list are dropped; anything else
/// is an error.
pub fn expect_string_list(value: Value) -> Result<Vec<String>, EvalError> {
    const WRONG: EvalError =
        EvalError::WrongResultType("expression must return a string or a list of strings");
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.as_ref().clone()]),
        Value::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item {
                    Value::String(s) if s.is_empty() => {}
                    Value::String(s) => out.push(s.as_ref().clone()),
                    _ => return Err(WRONG),
                }
            }
            Ok(out)
        }
        _ => Err(WRONG),
    }
}

/// An execution error in words, without the values involved (they may be claim values): types
/// instead of values, keys and function names as they are.
fn describe(error: &ExecutionError) -> String {
    let kind = |value: &Value| value.type_of().to_string();
    match error {
        // A key may come from a claim (`claims.m[claims.k]`): control characters are escaped
        // so it cannot forge log lines.
        ExecutionError::NoSuchKey(key) => format!("no such key: {}", key.escape_debug()),
        ExecutionError::UndeclaredReference(name) => {
            format!("undeclared reference to '{}'", name.escape_debug())
        }
        ExecutionError::NoSuchOverload(overload) => overload.to_string(),
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got '{got}', want '{want}'")
        }
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} can not be compared to {}", kind(a), kind(b))
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            format!("no operator '{op}' for {} and {}", kind(a), kind(b))
        }
        ExecutionError::UnsupportedIndex(index, target) => {
            format!("cannot index {} with {}", kind(target), kind(index))
        }
        ExecutionError::UnsupportedKeyType(key) => {
            format!("{} cannot be a map key", kind(key))
        }
        ExecutionError::IndexOutOfBounds(_) => "index out of bounds".to_owned(),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".to_owned(),
        ExecutionError::Overflow(op, _, _) => format!("overflow in '{op}'"),
        ExecutionError::DuplicateKey(_) => "duplicate map key".to_owned(),
        ExecutionError::FunctionError { function, .. } => {
            format!("error in function '{function}'")
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("unsupported target type {}", kind(target))
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("'{method}' is not a method of {}", kind(target))
        }
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("expected {expected} arguments, got {actual}")
        }
        ExecutionError::MissingArgumentOrTarget => "missing argument or target".to_owned(),
        _ => "evaluation failed".to_owned(),
    }
}

// ---- load-time rewriting and checks -------------------------------------------------------

/// kube's `Unescape` (`pkg/cel/escaping.go`): `__dot__` → `.`, `__dash__` → `-`,
/// `__slash__` → `/`, `__underscores__` → `__`, and a whole-name `__<keyword>__` → the keyword.
/// `None` when the name holds an escape sequence that is not one of these.
pub fn unescape(escaped: &str) -> Option<String> {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    // The regexp `__[^_]+__`, leftmost first, non-overlapping.
    while let Some(start) = rest.find("__") {
        let after = &rest[start + 2..];
        let content_len = after.find('_').unwrap_or(after.len());
        if content_len == 0 || !after[content_len..].starts_with("__") {
            // No `__<content>__` starts here; keep the first underscore and search on.
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        }
        let content = &after[..content_len];
        out.push_str(&rest[..start]);
        match content {
            "underscores" => out.push_str("__"),
            "dot" => out.push('.'),
            "dash" => out.push('-'),
            "slash" => out.push('/'),
            keyword if RESERVED.contains(&keyword) => {
                // A keyword escape must be the whole name.
                if content.len() + 4 != escaped.len() {
                    return None;
                }
                out.push_str(keyword);
            }
            _ => return None,
        }
        rest = &after[content_len + 2..];
    }
    out.push_str(rest);
    Some(out)
}

fn unescape_in_place(name: &mut String) {
    if let Some(plain) = unescape(name) {
        *name = plain;
    }
}

/// Resolves escapes in field selections and in string-literal map keys (`x["a__dot__b"]`,
/// `x[?"…"]`, `x.?a__dot__b`), so lookups find the claim's real name.
fn unescape_fields(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Select(select) => {
            unescape_in_place(&mut select.field);
            unescape_fields(&mut select.operand);
        }
        Expr::Call(call) => {
            let literal_key = matches!(
                call.func_name.as_str(),
                operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT
            );
            if let Some(target) = call.target.as_deref_mut() {
                unescape_fields(target);
            }
            for (i, arg) in call.args.iter_mut().enumerate() {
                if literal_key && i == 1 {
                    if let Expr::Literal(LiteralValue::String(key)) = &mut arg.expr {
                        if let Some(plain) = unescape(key.inner()) {
                            *key = CelString::from(plain);
                        }
                        continue;
                    }
                }
                unescape_fields(arg);
            }
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                unescape_fields(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(unescape_fields),
        Expr::Map(map) => map.entries.iter_mut().for_each(|entry| {
            if let EntryExpr::MapEntry(e) = &mut entry.expr {
                unescape_fields(&mut e.key);
                unescape_fields(&mut e.value);
            }
        }),
        Expr::Struct(s) => s
            .entries
            .iter_mut()
            .for_each(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(e) => {
                    unescape_fields(&mut e.key);
                    unescape_fields(&mut e.value);
                }
                EntryExpr::StructField(f) => unescape_fields(&mut f.value),
            }),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('@')
        || name == operators::LOGICAL_NOT
        || name == operators::NEGATE
}

/// The dotted name a (non-test) selection chain on an identifier spells: `sets` or `a.b`.
fn qualified_name(expr: &IdedExpr) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(select) if !select.test => Some(format!(
            "{}.{}",
            qualified_name(&select.operand)?,
            select.field
        )),
        _ => None,
    }
}

fn root_ident(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Ident(name) => Some(name),
        Expr::Select(select) => root_ident(&select.operand),
        _ => None,
    }
}

/// Whether the environment declares what `probe` names (a call like `f()`, `null.f()` or
/// `ns.f()`, or a bare identifier such as a type name): evaluated with no variables, anything
/// but "undeclared reference" means it exists. The crate offers no declaration lookup; the
/// tests pin this for every function the documentation lists.
fn declared(probe: &str) -> bool {
    let Ok(program) = ENVIRONMENT.compile(probe) else {
        return false;
    };
    let context = Context::with_env(ENVIRONMENT.clone());
    !matches!(
        Value::resolve(program.expression(), &context),
        Err(ExecutionError::UndeclaredReference(_))
    )
}

const COMPREHENSION_MACROS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

fn check(expr: &IdedExpr, scope: &mut Vec<String>) -> Result<(), CompileError> {
    match &expr.expr {
        Expr::Ident(name) => {
            if scope.iter().any(|bound| bound == name) || declared(name) {
                Ok(())
            } else {
                Err(CompileError::UndeclaredReference(name.clone()))
            }
        }
        Expr::Literal(_) | Expr::Unspecified => Ok(()),
        Expr::Select(select) => check(&select.operand, scope),
        Expr::Call(call) => {
            if !is_operator(&call.func_name) {
                if call.target.is_some() && COMPREHENSION_MACROS.contains(&call.func_name.as_str())
                {
                    // The macros with one variable were expanded by the parser; what is left
                    // is the two-variable form.
                    return Err(CompileError::Unsupported("a two-variable comprehension"));
                }
                let bound_target = call
                    .target
                    .as_deref()
                    .and_then(root_ident)
                    .is_some_and(|root| scope.iter().any(|bound| bound == root));
                match call.target.as_deref() {
                    // `ns.f(…)` where `ns` is no variable: a namespaced function.
                    Some(target) if !bound_target && qualified_name(target).is_some() => {
                        let namespace = qualified_name(target).unwrap_or_default();
                        let name = format!("{namespace}.{}", call.func_name);
                        if !declared(&format!("{name}()")) {
                            return Err(CompileError::UndeclaredReference(name));
                        }
                        for arg in &call.args {
                            check(arg, scope)?;
                        }
                        return Ok(());
                    }
                    Some(_) => {
                        if !declared(&format!("null.{}()", call.func_name)) {
                            return Err(CompileError::UndeclaredReference(call.func_name.clone()));
                        }
                    }
                    None => {
                        if !declared(&format!("{}()", call.func_name)) {
                            return Err(CompileError::UndeclaredReference(call.func_name.clone()));
                        }
                    }
                }
            }
            if let Some(target) = call.target.as_deref() {
                check(target, scope)?;
            }
            call.args.iter().try_for_each(|arg| check(arg, scope))
        }
        Expr::Comprehension(c) => check_comprehension(c, scope),
        Expr::List(list) => list
            .elements
            .iter()
            .try_for_each(|element| check(element, scope)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => {
                check(&e.key, scope)?;
                check(&e.value, scope)
            }
            EntryExpr::StructField(_) => Err(CompileError::Unsupported("a message literal")),
        }),
        Expr::Struct(_) => Err(CompileError::Unsupported("a message literal")),
    }
}

fn check_comprehension(c: &ComprehensionExpr, scope: &mut Vec<String>) -> Result<(), CompileError> {
    if c.iter_var2.is_some() {
        return Err(CompileError::Unsupported("a two-variable comprehension"));
    }
    check(&c.iter_range, scope)?;
    check(&c.accu_init, scope)?;
    let before = scope.len();
    scope.push(c.iter_var.clone());
    scope.push(c.accu_var.clone());
    let result = [&c.loop_cond, &c.loop_step, &c.result]
        .into_iter()
        .try_for_each(|part| check(part, scope));
    scope.truncate(before);
    result
}

// ---- the comprehension step budget --------------------------------------------------------

/// Charges one step of the evaluation running on this thread; fails once none are left.
fn charge_step<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let left = STEPS_LEFT.get();
    if left == 0 {
        STEPS_EXHAUSTED.set(true);
        return Err(ExecutionError::function_error(
            "comprehension",
            "step budget exhausted",
        ));
    }
    STEPS_LEFT.set(left - 1);
    args.pop()
        .ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))
}

fn charged(expr: &mut IdedExpr) {
    let inner = std::mem::take(expr);
    *expr = IdedExpr {
        id: inner.id,
        expr: Expr::Call(CallExpr {
            func_name: CHARGE_STEP.to_owned(),
            target: None,
            args: vec![inner],
        }),
    };
}

enum StepShape {
    /// `guard ? @result + [x] : @result` with a literal loop condition.
    Filter,
    /// `@result + [f(x)]` with a literal loop condition.
    Map,
    /// Anything else (`all`, `exists`, `exists_one`).
    Other,
}

/// The shapes the crate's `map`/`filter` fast path recognises (`AppendStep` in cel's
/// `objects.rs`); charging must keep them intact.
fn step_shape(c: &ComprehensionExpr) -> StepShape {
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(name) if *name == c.accu_var);
    let appends = |e: &IdedExpr| {
        matches!(&e.expr, Expr::Call(call)
            if call.func_name == operators::ADD
                && call.target.is_none()
                && matches!(call.args.as_slice(),
                    [lhs, rhs] if is_accu(lhs) && matches!(rhs.expr, Expr::List(_))))
    };
    if !is_accu(&c.result) || !matches!(c.loop_cond.expr, Expr::Literal(_)) {
        return StepShape::Other;
    }
    match &c.loop_step.expr {
        Expr::Call(call)
            if call.func_name == operators::CONDITIONAL
                && call.target.is_none()
                && call.args.len() == 3
                && appends(&call.args[1])
                && is_accu(&call.args[2]) =>
        {
            StepShape::Filter
        }
        _ if appends(&c.loop_step) => StepShape::Map,
        _ => StepShape::Other,
    }
}

/// Wraps the part of each comprehension that runs once per step in [`CHARGE_STEP`]: the loop
/// condition, except for `map`/`filter` (whose literal condition the crate's fast path needs),
/// where it is the filter's guard or the mapped element.
fn charge_comprehension_steps(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                charge_comprehension_steps(part);
            }
            match step_shape(c) {
                StepShape::Filter => {
                    if let Expr::Call(step) = &mut c.loop_step.expr {
                        charged(&mut step.args[0]);
                    }
                }
                StepShape::Map => {
                    if let Expr::Call(step) = &mut c.loop_step.expr {
                        if let Expr::List(list) = &mut step.args[1].expr {
                            list.elements.iter_mut().for_each(charged);
                        }
                    }
                }
                StepShape::Other => charged(&mut c.loop_cond),
            }
        }
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                charge_comprehension_steps(target);
            }
            call.args.iter_mut().for_each(charge_comprehension_steps);
        }
        Expr::Select(select) => charge_comprehension_steps(&mut select.operand),
        Expr::List(list) => list
            .elements
            .iter_mut()
            .for_each(charge_comprehension_steps),
        Expr::Map(map) => map.entries.iter_mut().for_each(|entry| {
            if let EntryExpr::MapEntry(e) = &mut entry.expr {
                charge_comprehension_steps(&mut e.key);
                charge_comprehension_steps(&mut e.value);
            }
        }),
        Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StaticKind {
    Bool,
    Other,
}

/// The result kind an expression visibly has, when its root shows it; `None` when it depends
/// on the data (a claim, a conditional, an index, a function's result).
fn static_kind(expr: &IdedExpr) -> Option<StaticKind> {
    match &expr.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => Some(StaticKind::Bool),
        Expr::Literal(_) | Expr::List(_) | Expr::Map(_) => Some(StaticKind::Other),
        Expr::Select(select) if select.test => Some(StaticKind::Bool),
        Expr::Call(call) => match call.func_name.as_str() {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN
            | operators::NOT_STRICTLY_FALSE
            | "startsWith"
            | "endsWith"
            | "contains"
            | "matches" => Some(StaticKind::Bool),
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => Some(StaticKind::Other),
            "size" | "string" | "int" | "uint" | "double" | "split" | "lowerAscii"
            | "upperAscii" | "join" | "replace" | "substring" | "trim" => Some(StaticKind::Other),
            _ => None,
        },
        _ => None,
    }
}

/// kube's `hasSelectExp`: `<operand>.<field>` (also as `has()` or `.?`) anywhere in `expr`.
fn selects(expr: &IdedExpr, operand: &str, field: &str) -> bool {
    let is_operand = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(name) if name == operand);
    match &expr.expr {
        Expr::Select(select) => {
            (is_operand(&select.operand) && select.field == field)
                || selects(&select.operand, operand, field)
        }
        Expr::Call(call) => {
            if call.func_name == operators::OPT_SELECT
                && call.target.is_none()
                && call.args.len() == 2
                && is_operand(&call.args[0])
                && matches!(&call.args[1].expr, Expr::Literal(LiteralValue::String(s)) if s.inner() == field)
            {
                return true;
            }
            call.args.iter().any(|arg| selects(arg, operand, field))
                || call
                    .target
                    .as_deref()
                    .is_some_and(|target| selects(target, operand, field))
        }
        Expr::List(list) => list.elements.iter().any(|e| selects(e, operand, field)),
        Expr::Map(map) => map.entries.iter().any(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => {
                selects(&e.key, operand, field) || selects(&e.value, operand, field)
            }
            EntryExpr::StructField(f) => selects(&f.value, operand, field),
        }),
        Expr::Struct(s) => s.entries.iter().any(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => {
                selects(&e.key, operand, field) || selects(&e.value, operand, field)
            }
            EntryExpr::StructField(f) => selects(&f.value, operand, field),
        }),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .any(|part| selects(part, operand, field)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => false,
    }
}

// ---- the sets extension (cel-go ext.Sets) -------------------------------------------------

fn sets_extension(env: &mut Env) -> Result<(), cel::DeclarationError> {
    let lists = || vec![LIST_TYPE, LIST_TYPE];
    env.add_overload(
        "sets.contains",
        "sets_contains_list",
        lists(),
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "sets_equivalent_list",
        lists(),
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "sets_intersects_list",
        lists(),
        sets_intersects,
    )?;
    Ok(())
}

fn list_elements<'a, 'b, 'v>(
    list: &'a CowVal<'b, 'v>,
) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let iterable = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: list.get_type().name().to_owned(),
            want: "list".to_owned(),
        })?;
    let mut iter = iterable.iter();
    let mut out = Vec::new();
    while let Some(item) = iter.next() {
        out.push(item);
    }
    Ok(out)
}

/// Whether every element of `b` is in `a` (CEL equality).
fn contains_all(a: &[&dyn Val], b: &[&dyn Val]) -> bool {
    b.iter().all(|y| a.iter().any(|x| x.equals(*y)))
}

fn two_lists<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    f: impl FnOnce(&[&dyn Val], &[&dyn Val]) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b]: [CowVal<'b, 'v>; 2] = args
        .try_into()
        .map_err(|args: Vec<_>| ExecutionError::invalid_argument_count(2, args.len()))?;
    let (a, b) = (list_elements(&a)?, list_elements(&b)?);
    Ok(CowVal::owned(CelBool::from(f(&a, &b))))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    two_lists(args, contains_all)
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    two_lists(args, |a, b| contains_all(a, b) && contains_all(b, a))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    two_lists(args, |a, b| {
        a.iter().any(|x| b.iter().any(|y| x.equals(*y)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Json) -> Input {
        match value {
            Json::Object(map) => Input::claims(&map).unwrap(),
            _ => panic!("claims must be an object"),
        }
    }

    fn eval(source: &str, input: Json) -> Result<Value, EvalError> {
        compile(source, Variable::Claims, ResultKind::Any)
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .evaluate(&claims(input))
    }

    fn string(s: &str) -> Value {
        Value::String(Arc::new(s.to_owned()))
    }

    fn strings(list: &[&str]) -> Value {
        Value::List(Arc::new(list.iter().map(|s| string(s)).collect()))
    }

    #[test]
    fn the_step_budget_bounds_nested_comprehensions() {
        let wide: Vec<String> = (0..4000).map(|i| i.to_string()).collect();
        let input = claims(json!({ "w": wide }));
        let run = |source: &str| {
            compile(source, Variable::Claims, ResultKind::Any)
                .unwrap()
                .evaluate(&input)
        };
        // One pass over the widest claims fits, in every comprehension shape.
        for single in [
            "claims.w.all(x, x != 'none')",
            "!claims.w.exists(x, x == 'none')",
            "claims.w.exists_one(x, x == '1')",
            "claims.w.map(x, x + '!').size() == 4000",
            "claims.w.filter(x, x != '1').size() == 3999",
            "claims.w.map(x, x != '1', x).size() == 3999",
        ] {
            assert_eq!(run(single), Ok(Value::Bool(true)), "{single}");
        }
        // 4000 x 4000 steps do not: refused after the budget, in every shape, even when an
        // `||` would swallow the error.
        for nested in [
            "claims.w.all(x, !claims.w.exists(y, y == 'none'))",
            "claims.w.map(x, claims.w.filter(y, y == x)).size() > 0",
            "claims.w.exists(x, claims.w.map(y, y).size() == 0)",
            "claims.w.all(x, claims.w.all(y, y != 'none')) || true",
        ] {
            assert_eq!(run(nested), Err(EvalError::TooExpensive), "{nested}");
        }
        // The budget is per evaluation: the next one starts afresh.
        assert_eq!(run("claims.w.all(x, x != 'none')"), Ok(Value::Bool(true)));
    }

    #[test]
    fn expressions_are_send_and_sync() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Expression>();
        shareable::<Input>();
    }

    /// Every function and macro `docs/authentication.md` lists, on GitHub-Actions-shaped claims.
    #[test]
    fn every_documented_function() {
        let gha = json!({
            "sub": "repo:acme/shop:ref:refs/heads/main",
            "repository": "acme/shop",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "groups": ["dev", "Ops", ""],
            "n": 3,
            "nested": {"a": {"b": "c"}},
        });
        let cases: &[(&str, Value)] = &[
            ("has(claims.repository)", Value::Bool(true)),
            ("has(claims.environment)", Value::Bool(false)),
            ("has(claims.nested.a.b)", Value::Bool(true)),
            ("claims.groups.exists(g, g == 'dev')", Value::Bool(true)),
            ("claims.groups.exists(g, g == 'qa')", Value::Bool(false)),
            ("claims.groups.exists_one(g, g == 'Ops')", Value::Bool(true)),
            ("claims.groups.all(g, g.size() < 4)", Value::Bool(true)),
            ("claims.groups.all(g, g != '')", Value::Bool(false)),
            (
                "claims.groups.map(g, 'oidc:' + g)",
                strings(&["oidc:dev", "oidc:Ops", "oidc:"]),
            ),
            ("claims.groups.filter(g, g != '')", strings(&["dev", "Ops"])),
            (
                "claims.groups.map(g, g != '', g.lowerAscii())",
                strings(&["dev", "ops"]),
            ),
            ("claims.ref.startsWith('refs/heads/')", Value::Bool(true)),
            ("claims.ref.endsWith('/main')", Value::Bool(true)),
            ("claims.repository.split('/')", strings(&["acme", "shop"])),
            ("claims.repository.split('/')[1]", string("shop")),
            ("'ACME/Shop'.lowerAscii()", string("acme/shop")),
            ("claims.repository.upperAscii()", string("ACME/SHOP")),
            (
                "claims.sub.matches('^repo:acme/[a-z]+:ref:refs/heads/main$')",
                Value::Bool(true),
            ),
            ("claims.sub.matches('^repo:evil/')", Value::Bool(false)),
            ("claims.repository.contains('/')", Value::Bool(true)),
            ("claims.ref.replace('refs/heads/', '')", string("main")),
            ("claims.ref.substring(5)", string("heads/main")),
            ("'  x '.trim()", string("x")),
            ("claims.repository.indexOf('/')", Value::Int(4)),
            ("['a', 'b'].join('-')", string("a-b")),
            ("'%s/%s'.format(['a', 'b'])", string("a/b")),
            ("size(claims.groups)", Value::Int(3)),
            ("claims.groups.size()", Value::Int(3)),
            ("'dev' in claims.groups", Value::Bool(true)),
            ("claims.n == 3", Value::Bool(true)),
            ("int(claims.n) + 1", Value::Int(4)),
            ("string(claims.n)", string("3")),
            ("type(claims.n) == double", Value::Bool(true)),
            ("claims.?environment.orValue('none')", string("none")),
            ("claims[?'repository'].orValue('')", string("acme/shop")),
            (
                "claims.repository_owner == 'acme' ? 'yes' : 'no'",
                string("yes"),
            ),
            (
                "sets.contains(['a', 'b', 'c'], ['a', 'c'])",
                Value::Bool(true),
            ),
            ("sets.contains(['a'], ['a', 'b'])", Value::Bool(false)),
            (
                "sets.equivalent(['a', 'b'], ['b', 'a', 'a'])",
                Value::Bool(true),
            ),
            (
                "sets.intersects(claims.groups, ['qa', 'dev'])",
                Value::Bool(true),
            ),
            ("sets.intersects(claims.groups, ['qa'])", Value::Bool(false)),
            ("['b', 'a'].sort()", strings(&["a", "b"])),
            ("['a', 'a'].distinct()", strings(&["a"])),
            ("['b', 'a'].reverse()", strings(&["a", "b"])),
            ("['a', 'b', 'c'].slice(1, 2)", strings(&["b"])),
            ("[['a'], ['b']].flatten()", strings(&["a", "b"])),
            ("['bb', 'a'].sortBy(s, s.size())", strings(&["a", "bb"])),
            ("claims.repository.charAt(0)", string("a")),
            ("'a/b/c'.lastIndexOf('/')", Value::Int(3)),
            ("'shop'.reverse()", string("pohs")),
            ("strings.quote('a\"b')", string("\"a\\\"b\"")),
            ("claims.?environment.hasValue()", Value::Bool(false)),
            (
                "optional.of(claims.ref).orValue('')",
                string("refs/heads/main"),
            ),
            ("double(claims.n) / 2.0 == 1.5", Value::Bool(true)),
        ];
        for (source, expected) in cases {
            assert_eq!(&eval(source, gha.clone()).unwrap(), expected, "{source}");
        }
    }

    #[test]
    fn a_missing_claim_is_an_evaluation_error() {
        assert_eq!(
            eval("claims.hd == 'example.com'", json!({})),
            Err(EvalError::Execution("no such key: hd".into()))
        );
        assert_eq!(
            eval("claims.a.b.c", json!({"a": {"b": {}}})),
            Err(EvalError::Execution("no such key: c".into()))
        );
    }

    #[test]
    fn escaped_names_read_claims_with_dots_dashes_slashes_and_keywords() {
        let sa = json!({
            "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "coredns"}},
            "a-b/c": "x",
            "namespace": "ns",
            "x__y": "u",
        });
        let cases = [
            ("claims.kubernetes__dot__io.namespace", "kube-system"),
            ("claims.kubernetes__dot__io.serviceaccount.name", "coredns"),
            ("claims['kubernetes.io'].namespace", "kube-system"),
            ("claims['kubernetes__dot__io']['namespace']", "kube-system"),
            ("claims.a__dash__b__slash__c", "x"),
            ("claims.__namespace__", "ns"),
            ("claims.x__underscores__y", "u"),
            (
                "claims.?kubernetes__dot__io.namespace.orValue('')",
                "kube-system",
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(eval(source, sa.clone()), Ok(string(expected)), "{source}");
        }
        assert_eq!(
            eval("has(claims.kubernetes__dot__io)", sa),
            Ok(Value::Bool(true))
        );
    }

    #[test]
    fn unescape_follows_kubernetes() {
        for (escaped, plain) in [
            ("abc", Some("abc")),
            ("a__dot__b", Some("a.b")),
            ("a__dash__b__slash__c", Some("a-b/c")),
            ("a__underscores__b", Some("a__b")),
            ("___dot__", Some("_.")),
            ("__a_b__", Some("__a_b__")),
            ("__in__", Some("in")),
            ("x__in__", None),
            ("a__foo__b", None),
        ] {
            assert_eq!(unescape(escaped).as_deref(), plain, "{escaped}");
        }
    }

    #[test]
    fn compile_errors() {
        let claims = |source: &str| compile(source, Variable::Claims, ResultKind::Any);
        let rule = |source: &str| compile(source, Variable::Claims, ResultKind::Bool);
        assert!(matches!(
            claims("claims.sub +"),
            Err(CompileError::Syntax(_))
        ));
        assert_eq!(
            claims("foo.sub"),
            Err(CompileError::UndeclaredReference("foo".into()))
        );
        assert_eq!(
            claims("user.username"),
            Err(CompileError::UndeclaredReference("user".into()))
        );
        assert_eq!(
            compile("claims.sub", Variable::User, ResultKind::Any),
            Err(CompileError::UndeclaredReference("claims".into()))
        );
        assert_eq!(
            claims("claims.sub.startWith('x')"),
            Err(CompileError::UndeclaredReference("startWith".into()))
        );
        assert_eq!(
            claims("lower(claims.sub)"),
            Err(CompileError::UndeclaredReference("lower".into()))
        );
        assert_eq!(
            claims("sets.union([1], [2])"),
            Err(CompileError::UndeclaredReference("sets.union".into()))
        );
        assert_eq!(
            claims("cel.bind(x, 1, x)"),
            Err(CompileError::UndeclaredReference("cel.bind".into()))
        );
        assert_eq!(
            claims("claims.groups.all(i, g, g != '')"),
            Err(CompileError::Unsupported("a two-variable comprehension"))
        );
        // A comprehension variable is only bound inside its comprehension.
        assert_eq!(
            claims("claims.a.all(x, x != '') && x == ''"),
            Err(CompileError::UndeclaredReference("x".into()))
        );
        for not_bool in ["claims.sub + 'x'", "'yes'", "[true]", "size(claims.groups)"] {
            assert_eq!(rule(not_bool), Err(CompileError::NotBool), "{not_bool}");
        }
        for maybe_bool in ["claims.admin", "claims.a == 'b'", "has(claims.a)", "true"] {
            assert!(rule(maybe_bool).is_ok(), "{maybe_bool}");
        }
    }

    #[test]
    fn result_types_are_checked() {
        assert_eq!(expect_string(string("a"), "x"), Ok("a".into()));
        assert_eq!(
            expect_string(
                Value::Int(1),
                "username claim expression must return a string"
            ),
            Err(EvalError::WrongResultType(
                "username claim expression must return a string"
            ))
        );
        assert!(expect_bool(string("true")).is_err());
        // kube's convertCELValueToStringList.
        assert_eq!(expect_string_list(string("a")), Ok(vec!["a".into()]));
        assert_eq!(expect_string_list(string("")), Ok(vec![]));
        assert_eq!(expect_string_list(Value::Null), Ok(vec![]));
        assert_eq!(
            expect_string_list(strings(&["a", "", "b"])),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(expect_string_list(strings(&[])), Ok(vec![]));
        assert!(expect_string_list(Value::List(Arc::new(vec![Value::Int(1)]))).is_err());
        assert!(expect_string_list(Value::Bool(true)).is_err());
    }

    #[test]
    fn claims_beyond_the_bounds_are_refused_before_evaluation() {
        let wide: Vec<u32> = (0..MAX_CLAIM_VALUES as u32).collect();
        let Json::Object(map) = json!({ "wide": wide }) else {
            unreachable!()
        };
        assert_eq!(Input::claims(&map).unwrap_err(), EvalError::ClaimsTooLarge);
        let fits: Vec<u32> = (0..MAX_CLAIM_VALUES as u32 - 2).collect();
        let Json::Object(map) = json!({ "wide": fits }) else {
            unreachable!()
        };
        assert!(Input::claims(&map).is_ok());

        let mut deep = json!("x");
        for _ in 0..MAX_CLAIM_DEPTH {
            deep = json!([deep]);
        }
        let Json::Object(map) = json!({ "deep": deep }) else {
            unreachable!()
        };
        assert_eq!(Input::claims(&map).unwrap_err(), EvalError::ClaimsTooLarge);
    }

    #[test]
    fn user_rules_see_the_mapped_user() {
        let user = UserInfo {
            username: "github:repo:acme/shop".into(),
            uid: None,
            groups: vec!["github:acme/shop".into()],
            extra: [(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec!["JTI=1".to_owned()],
            )]
            .into(),
        };
        let input = Input::user(&user);
        let rule = |source: &str| {
            expect_bool(
                compile(source, Variable::User, ResultKind::Bool)
                    .unwrap()
                    .evaluate(&input)
                    .unwrap(),
            )
            .unwrap()
        };
        assert!(rule("!user.username.startsWith('system:')"));
        assert!(rule("user.groups.all(g, !g.startsWith('system:'))"));
        assert!(rule("user.uid == ''"));
        assert!(rule(
            "user.extra.authentication__dot__kubernetes__dot__io__slash__credential__dash__id[0] == 'JTI=1'"
        ));
        assert!(rule("!('bar' in user.extra)"));
    }

    #[test]
    fn email_references_are_found_as_kubernetes_finds_them() {
        let find = |source: &str, field: &str| {
            compile(source, Variable::Claims, ResultKind::Any)
                .unwrap()
                .selects_claim(field)
        };
        assert!(find("claims.email", "email"));
        assert!(find(
            "has(claims.email) ? claims.email : claims.sub",
            "email"
        ));
        assert!(find("claims.?email.orValue('')", "email"));
        assert!(find("[claims.email][0]", "email"));
        assert!(find(
            "claims.groups.map(g, claims.email_verified)",
            "email_verified"
        ));
        assert!(!find("claims.sub", "email"));
        assert!(!find("claims.nested.email", "email"));
        assert!(!find("'claims.email'", "email"));
    }

    #[test]
    fn keys_from_claims_cannot_forge_log_lines() {
        let error = eval(
            "claims.m[claims.k]",
            json!({"m": {}, "k": "x\nAuSuccess forged"}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(error, "no such key: x\\nAuSuccess forged");
        assert!(!error.contains('\n'));
    }

    #[test]
    fn errors_name_types_not_claim_values() {
        let secret = "s3cr3t-value";
        for source in [
            "claims.a + 1",
            "claims.a < 1",
            "claims.a[1]",
            "int(claims.a)",
            "claims.l[5]",
        ] {
            let error = eval(source, json!({"a": secret, "l": [secret]})).unwrap_err();
            assert!(!error.to_string().contains(secret), "{source}: {error}");
        }
    }
}
