//! One file per protocol detector; each exports `pub static SPEC: Spec`.
