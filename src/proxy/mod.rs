pub mod headers;
pub mod status;
