//! Boot-time reconcile plan (pure).
