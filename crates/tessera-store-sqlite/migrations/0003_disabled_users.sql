-- A disabled user keeps the account but cannot log in; NULL means enabled.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
