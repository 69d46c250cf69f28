//! Helpers shared by the integration tests (`mod support;` in each test file).

pub(crate) mod jwt;
