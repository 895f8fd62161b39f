//! Forged and malformed tokens: every trick must give 401/400, never 5xx.
