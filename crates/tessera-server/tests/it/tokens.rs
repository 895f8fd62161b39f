//! Token-based authentication and the hybrid, every row of the token tables.
