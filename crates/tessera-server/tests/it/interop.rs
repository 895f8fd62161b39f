//! Interop: tokens verified by an independent JOSE implementation from the JWKS alone.
