//! A real `nats-server` per test, in each authentication mode.
