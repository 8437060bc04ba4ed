//! GUI tests with `egui_kittest`: real runs of real scenarios, driven by
//! clicking labels like a user would.
