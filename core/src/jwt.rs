//! NATS JWTs: claims as data, encoded through a signer the caller passes in, and decoded
//! without verification (to read an expiry).
