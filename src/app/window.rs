//! The window: what paints it and how a frame stays cheap where there is no GPU. Under Mesa's
//! software rasteriser a frame's cost is its covered pixels and triangles, so the panels are
//! painted by the frame's clear (a memset), plots have no filled background, widgets have square
//! corners (a rounded rect is ~120 triangles, a square one ~10) and glow paints by default (the
//! same frame in ~1/4 of wgpu's time on lavapipe). README "The app" has the figures.

use super::NoiseScopeApp;
use super::measure::Bench;
use crate::error::{Error, Result};
use crate::run::RunSpec;

use super::BenchOptions;

/// What paints the window. Glow (OpenGL) by default: under Mesa's software rasteriser it paints
/// the default scene's frame ~4x faster than wgpu (README, "The app"); wgpu is the fallback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Renderer {
    #[default]
    Glow,
    Wgpu,
}

impl Renderer {
    pub fn name(self) -> &'static str {
        match self {
            Renderer::Glow => "glow",
            Renderer::Wgpu => "wgpu",
        }
    }

    fn other(self) -> Renderer {
        match self {
            Renderer::Glow => Renderer::Wgpu,
            Renderer::Wgpu => Renderer::Glow,
        }
    }

    fn eframe(self) -> eframe::Renderer {
        match self {
            Renderer::Glow => eframe::Renderer::Glow,
            Renderer::Wgpu => eframe::Renderer::Wgpu,
        }
    }
}

impl std::fmt::Display for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Renderer {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "glow" | "gl" | "opengl" => Ok(Renderer::Glow),
            "wgpu" => Ok(Renderer::Wgpu),
            other => Err(format!("unknown renderer `{other}` (glow or wgpu)")),
        }
    }
}

/// The panels' background, painted by the frame's clear instead of one full-size quad per panel:
/// a software rasteriser pays for every covered pixel, a clear is a memset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowFill {
    dark: egui::Color32,
    light: egui::Color32,
}

impl WindowFill {
    /// Takes the panel fills out of `ctx`'s styles (panels become transparent).
    fn take_from(ctx: &egui::Context) -> Self {
        let fill = WindowFill {
            dark: ctx.style_of(egui::Theme::Dark).visuals.panel_fill,
            light: ctx.style_of(egui::Theme::Light).visuals.panel_fill,
        };
        ctx.all_styles_mut(|style| style.visuals.panel_fill = egui::Color32::TRANSPARENT);
        fill
    }

    pub(crate) fn for_visuals(self, visuals: &egui::Visuals) -> egui::Color32 {
        if visuals.dark_mode {
            self.dark
        } else {
            self.light
        }
    }
}

/// A style cheap to rasterise: square widget corners and slider handles (egui's default rounded
/// ones cost ~120 triangles per widget, a third of the overview's frame).
pub(crate) fn apply_lean_style(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        let widgets = &mut style.visuals.widgets;
        for state in [
            &mut widgets.noninteractive,
            &mut widgets.inactive,
            &mut widgets.hovered,
            &mut widgets.active,
            &mut widgets.open,
        ] {
            state.corner_radius = egui::CornerRadius::ZERO;
        }
        style.visuals.handle_shape = egui::style::HandleShape::Rect { aspect_ratio: 0.5 };
    });
}

/// Window options shared by the app and bench-ui.
fn native_options(renderer: Renderer) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("noisescope")
            .with_inner_size([1500.0, 920.0])
            .with_min_inner_size([960.0, 600.0]),
        renderer: renderer.eframe(),
        // Flat colours have no banding to dither away; in software it costs ~20% of a frame.
        dithering: false,
        ..Default::default()
    }
}

/// Opens a window on the app `make` builds and returns when it closes. When `renderer` cannot
/// open a window (no OpenGL, no Vulkan adapter), says so once and tries the other one.
fn open_window(
    name: &str,
    renderer: Renderer,
    options: impl Fn(Renderer) -> eframe::NativeOptions,
    make: impl Fn(&eframe::CreationContext<'_>) -> NoiseScopeApp,
) -> Result<()> {
    let mut failures = Vec::new();
    for attempt in [renderer, renderer.other()] {
        let started = std::cell::Cell::new(false);
        let result = eframe::run_native(
            name,
            options(attempt),
            Box::new(|cc| {
                started.set(true);
                let mut app = make(cc);
                app.window_fill = Some(WindowFill::take_from(&cc.egui_ctx));
                app.renderer = attempt;
                app.attach(&cc.egui_ctx);
                Ok(Box::new(app))
            }),
        );
        match result {
            Ok(()) => return Ok(()),
            // Once the app ran, a failure is the app's, not the renderer's.
            Err(e) if started.get() => return Err(Error::App(e.to_string())),
            Err(e) => {
                eprintln!("note: the {attempt} renderer could not open a window ({e})");
                failures.push(format!("{attempt}: {e}"));
            }
        }
    }
    Err(Error::App(format!(
        "no renderer could open a window ({})",
        failures.join("; ")
    )))
}

/// Opens the app window on `preset`, else on the saved settings (the default scene on first
/// launch), and returns when it closes.
pub fn run(preset: Option<RunSpec>, renderer: Renderer) -> Result<()> {
    open_window("noisescope", renderer, native_options, |cc| {
        let mut app = NoiseScopeApp::from_storage(cc.storage);
        if let Some(spec) = &preset {
            app.settings.spec = spec.clone();
        }
        app
    })
}

/// Opens the app on the default scene, runs the bench script, prints the report and closes.
pub fn run_bench(opts: BenchOptions) -> Result<()> {
    let options = |renderer| {
        let mut options = native_options(renderer);
        // Never touch the user's saved settings or window.
        options.persist_window = false;
        options.viewport = options.viewport.with_inner_size(opts.window);
        options.glow_options.vsync = opts.vsync;
        options.wgpu_options.surface.present_mode = if opts.vsync {
            eframe::wgpu::PresentMode::AutoVsync
        } else {
            eframe::wgpu::PresentMode::AutoNoVsync
        };
        options
    };
    open_window("noisescope-bench", opts.renderer, options, |_| {
        let mut app = NoiseScopeApp::new(opts.scene.clone());
        app.bench = Some(Bench::new(opts.clone()));
        app
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderers_parse_and_fall_back_to_each_other() {
        assert_eq!("glow".parse::<Renderer>(), Ok(Renderer::Glow));
        assert_eq!("OpenGL".parse::<Renderer>(), Ok(Renderer::Glow));
        assert_eq!("wgpu".parse::<Renderer>(), Ok(Renderer::Wgpu));
        assert!(
            "vulkan"
                .parse::<Renderer>()
                .expect_err("not a renderer")
                .contains("glow or wgpu")
        );
        assert_eq!(Renderer::Glow.other(), Renderer::Wgpu);
        assert_eq!(Renderer::Wgpu.other(), Renderer::Glow);
        assert_eq!(Renderer::default(), Renderer::Glow);
    }

    #[test]
    fn the_clear_colour_takes_over_the_panel_fill() {
        let ctx = egui::Context::default();
        let dark = ctx.style_of(egui::Theme::Dark).visuals.panel_fill;
        let light = ctx.style_of(egui::Theme::Light).visuals.panel_fill;
        assert_ne!(dark, egui::Color32::TRANSPARENT);
        let fill = WindowFill::take_from(&ctx);
        for theme in [egui::Theme::Dark, egui::Theme::Light] {
            assert_eq!(
                ctx.style_of(theme).visuals.panel_fill,
                egui::Color32::TRANSPARENT
            );
        }
        assert_eq!(fill.for_visuals(&egui::Visuals::dark()), dark);
        assert_eq!(fill.for_visuals(&egui::Visuals::light()), light);
    }

    #[test]
    fn the_lean_style_has_square_corners() {
        let ctx = egui::Context::default();
        apply_lean_style(&ctx);
        let style = ctx.style_of(egui::Theme::Dark);
        assert_eq!(
            style.visuals.widgets.inactive.corner_radius,
            egui::CornerRadius::ZERO
        );
        assert!(matches!(
            style.visuals.handle_shape,
            egui::style::HandleShape::Rect { .. }
        ));
    }
}
