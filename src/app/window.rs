//! The window: `forkscope` without a command opens it ([`run_gui`]), a
//! `--screenshot` is taken from the frame it shows with its
//! `--dump-layout` beside it, and a missing display is said in one line.

use super::*;

impl App {
    /// Every box and label of the frame just drawn, in window pixels.
    pub(super) fn dump(&self, ctx: &egui::Context) -> layout::Dump {
        let px = ctx.pixels_per_point();
        let window = ctx.content_rect().size() * px;
        let r = |r: egui::Rect| [r.min.x * px, r.min.y * px, r.max.x * px, r.max.y * px];
        let stage = self
            .stage
            .last_layout
            .as_ref()
            .map_or(egui::Rect::ZERO, |l| l.stage);
        let mut items: Vec<layout::Item> = self
            .stage
            .last_layout
            .as_ref()
            .map(|l| l.items(px))
            .unwrap_or_default();
        items.extend(self.toolbar.layout_items(px));
        if let Some(card) = self.quiz.last_card {
            items.push(layout::Item {
                id: "quiz".into(),
                kind: "quiz",
                rect: r(card),
                font_px: None,
                key: false,
                parent: None,
                cut: false,
            });
            for (i, ring) in self.quiz.last_rings.iter().enumerate() {
                items.push(layout::Item {
                    id: format!("quiz:ring{i}"),
                    kind: "edge",
                    rect: r(*ring),
                    font_px: None,
                    key: false,
                    parent: None,
                    cut: false,
                });
            }
        }
        layout::Dump {
            window: [window.x.round(), window.y.round()],
            stage: r(stage),
            items,
        }
    }

    pub(super) fn screenshot(&mut self, ctx: &egui::Context) {
        let Some(plan) = self.screenshot.as_mut() else {
            return;
        };
        let since_run = self.run_started.map(|t| t.elapsed()).unwrap_or_default();
        let many_view = self.view == MainView::ManyRuns;
        let ready = if many_view {
            self.many.tally.as_ref().is_some_and(|t| t.finished) && !self.many.is_running()
        } else {
            self.run_started.is_some() && since_run >= plan.after
        };
        let started = if many_view {
            self.many.tally.is_some()
        } else {
            self.run_started.is_some()
        };
        match plan.requested_at {
            None if ready => {
                let slot = plan.image.clone();
                let repaint = ctx.clone();
                ctx.request_screenshot(move |image| {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(image);
                    }
                    repaint.request_repaint();
                });
                // The window paints this frame before it takes the
                // request: the picture is the next frame's, and so is
                // the dump (written when the picture comes).
                plan.requested_at = Some(Instant::now());
            }
            None => {
                if !started && self.frame_count > 10 {
                    // The run could not start: say why and give up.
                    eprintln!(
                        "forkscope: no screenshot: {}",
                        self.status.as_deref().unwrap_or("the run did not start")
                    );
                    self.exit_code.store(1, Ordering::SeqCst);
                    self.screenshot = None;
                    ctx.send_viewport_cmd(ViewportCommand::Close);
                }
            }
            Some(asked) => {
                let image = plan.image.lock().ok().and_then(|mut s| s.take());
                // The picture arrives in the frame after the one it shows:
                // the dump of that frame is the one kept from the last call.
                let this_frame = plan.layout_path.is_some().then(|| self.dump(ctx));
                let Some(plan) = self.screenshot.as_mut() else {
                    return;
                };
                let shown = std::mem::replace(&mut plan.last_dump, this_frame);
                if image.is_some()
                    && let (Some(path), Some(dump)) = (plan.layout_path.clone(), shown)
                {
                    let written = serde_json::to_string_pretty(&dump)
                        .map_err(|e| e.to_string())
                        .and_then(|text| std::fs::write(&path, text).map_err(|e| e.to_string()));
                    if let Err(e) = written {
                        eprintln!("forkscope: cannot save {}: {e}", path.display());
                        plan.layout_failed = true;
                    }
                }
                let outcome = match image {
                    Some(image) => Some(save_png(&image, &plan.path)),
                    None if asked.elapsed() > SCREENSHOT_TIMEOUT => {
                        Some(Err("the window never delivered a screenshot".to_string()))
                    }
                    None => None,
                };
                if let Some(outcome) = outcome {
                    let code = match outcome {
                        Ok(()) if plan.layout_failed => 1,
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("forkscope: cannot save {}: {e}", plan.path.display());
                            1
                        }
                    };
                    self.exit_code.store(code, Ordering::SeqCst);
                    self.screenshot = None;
                    self.stop_now();
                    ctx.send_viewport_cmd(ViewportCommand::Close);
                }
            }
        }
    }
}

fn save_png(image: &egui::ColorImage, path: &std::path::Path) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let (w, h) = (
        u32::try_from(w).map_err(|e| e.to_string())?,
        u32::try_from(h).map_err(|e| e.to_string())?,
    );
    let img = image::RgbaImage::from_raw(w, h, bytes)
        .ok_or_else(|| "the screenshot had the wrong size".to_string())?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| e.to_string())
}

/// `1280x800` → (1280, 800).
pub fn parse_size(text: &str) -> Option<(f32, f32)> {
    let (w, h) = text.split_once(['x', 'X'])?;
    let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    ((200..=10_000).contains(&w) && (200..=10_000).contains(&h)).then_some((w as f32, h as f32))
}

/// `forkscope` without a command: opens the window. Returns the exit code.
pub fn run_gui(args: &GuiArgs) -> i32 {
    let entered = Instant::now();
    let app = match App::new(args) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("forkscope: {e}");
            return 2;
        }
    };
    let size = match args.size.as_deref() {
        None => (1280.0, 800.0),
        Some(s) => match parse_size(s) {
            Some(size) => size,
            None => {
                eprintln!("forkscope: --size needs WIDTHxHEIGHT in pixels, e.g. 1280x800");
                return 2;
            }
        },
    };
    if let Some(why) = no_display() {
        eprintln!("forkscope: {why}");
        return 2;
    }
    let exit_code = app.exit_code_handle();
    let persist = settings::persistence_on(args);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("forkscope")
            .with_app_id("forkscope")
            .with_inner_size(size)
            .with_min_inner_size((480.0, 320.0)),
        renderer: eframe::Renderer::Glow,
        // The window's size and place come back next time, unless the
        // command line names a size (or it is a screenshot).
        persist_window: persist && args.size.is_none(),
        // Without persistence nothing is read either (not even egui's
        // remembered panel sizes): a path no file can be at.
        persistence_path: (!persist).then(|| PathBuf::from("/dev/null/forkscope-no-settings.ron")),
        ..Default::default()
    };
    let mut app = app;
    let args = args.clone();
    let exit_after_first_frame = std::env::var_os(EXIT_AFTER_FIRST_FRAME).is_some();
    let app_new = entered.elapsed();
    let result = eframe::run_native(
        "forkscope",
        options,
        Box::new(move |cc| {
            if persist {
                app.persist = true;
                if let Some(s) = cc
                    .storage
                    .and_then(|s| eframe::get_value::<settings::Settings>(s, settings::KEY))
                {
                    app.restore_settings(s, &args);
                }
            }
            Ok(if exit_after_first_frame {
                Box::new(FirstFrameOnly {
                    app,
                    entered,
                    app_new,
                    window: entered.elapsed(),
                    first_ui: Duration::ZERO,
                    frames: 0,
                }) as Box<dyn eframe::App>
            } else {
                Box::new(app) as Box<dyn eframe::App>
            })
        }),
    );
    match result {
        Ok(()) => exit_code.load(Ordering::SeqCst),
        Err(e) => {
            eprintln!(
                "forkscope: cannot open the window: {}",
                short_error(&e.to_string())
            );
            2
        }
    }
}

/// With this variable set, the window says `first frame painted` on stdout
/// as soon as its first frame is on the screen (with where the time went,
/// in ms since `run_gui` began), and closes: how `benches/start.rs` times
/// start to first frame. Not for users.
pub const EXIT_AFTER_FIRST_FRAME: &str = "FORKSCOPE_EXIT_AFTER_FIRST_FRAME";

/// The app, closing once its first frame has been painted.
struct FirstFrameOnly {
    app: App,
    entered: Instant,
    /// `App::new` took this long.
    app_new: Duration,
    /// eframe had its window and GL context after this long.
    window: Duration,
    /// The first frame's `ui` ended after this long.
    first_ui: Duration,
    frames: u32,
}

impl eframe::App for FirstFrameOnly {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frames += 1;
        // eframe paints (and shows the window) after the first `ui`
        // returns: the second call comes after the first frame was painted.
        if self.frames == 2 {
            use std::io::Write;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "first frame painted: app_new_ms={:.1} window_ms={:.1} first_ui_ms={:.1} \
                 painted_ms={:.1}",
                ms(self.app_new),
                ms(self.window),
                ms(self.first_ui),
                ms(self.entered.elapsed()),
            );
            let _ = out.flush();
            ui.ctx().send_viewport_cmd(ViewportCommand::Close);
        } else {
            ui.ctx().request_repaint();
        }
        self.app.frame(ui);
        if self.frames == 1 {
            self.first_ui = self.entered.elapsed();
        }
    }
}

/// Why there is surely no window to open, before winit says it in its own
/// words (a long message with a source path): no display server is named.
fn no_display() -> Option<&'static str> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    (!set("DISPLAY") && !set("WAYLAND_DISPLAY")).then_some(
        "no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); \
         the commands work without one (`forkscope list`, `forkscope run locked-counter`), \
         and scripts/screenshot.sh runs the app under Xvfb",
    )
}

/// A window-system error in one line, without the source paths some carry
/// (`os error at /home/…/registry/…/winit-…/src/…rs:123: …`).
fn short_error(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    match (line.find(" at /"), line.rfind(".rs:")) {
        (Some(start), Some(end)) if end > start => {
            // `.rs:123:` or `.rs:123:45:`: drop the line and column numbers.
            let rest = line[end + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = rest
                .strip_prefix(':')
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
            format!("{}{}", &line[..start], rest)
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod window_error_tests {
    use super::short_error;

    #[test]
    fn a_window_error_loses_its_source_path() {
        let winit = "winit error: os error at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/winit-0.30.12/src/platform_impl/linux/mod.rs:765: neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set.";
        assert_eq!(
            short_error(winit),
            "winit error: os error: neither WAYLAND_DISPLAY nor WAYLAND_SOCKET nor DISPLAY is set."
        );
        assert_eq!(short_error("plain\nsecond"), "plain");
    }
}
