//! The durable store: the only sled user.
