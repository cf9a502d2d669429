//! The left panel: every setting of a `RunSpec`, grouped and collapsible (Data, Denoiser,
//! Sampler & schedule, Stochasticity, Guidance, Run, View). Controls edit the settings in place;
//! the app compares the spec with the last started one and reruns. Every control's tooltip
//! gives its formula and source.

use egui::{ComboBox, RichText, Slider, Ui};

use crate::backend::BackendChoice;
use crate::core::Precision;
use crate::core::estimate::SigmaPrior;
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;
use crate::data::{DataSpec, toys};
use crate::run::spec::ClassSpec;

use super::Settings;

/// What a control asks the app to do beyond editing the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Rerun,
    Play,
    Pause,
    Step,
    FollowLive,
    OpenFolder,
    OpenNpy,
    ResetScene,
}

/// What the controls need to know about the shown run.
pub struct ControlsInfo {
    /// Classes of the shown data (0: unlabelled).
    pub classes: usize,
    /// Settings differ from the shown run and "rerun on change" is off.
    pub dirty: bool,
    pub playing: bool,
}

/// Editing state that is not a setting (text being typed).
#[derive(Default)]
pub struct ControlsState {
    /// The Gaussian spectrum as typed, parsed on Enter.
    pub spectrum_text: String,
    /// Why a control changed another one (e.g. S_churn switching heun to edm), shown once.
    pub note: Option<String>,
}

/// Formula and source of each control, shown as its tooltip. Kept in one table so a test can
/// check that every one renders with the app's fonts.
pub mod tips {
    pub const DATA: &str = "The data the exact denoiser knows. Finite sets use the ideal empirical denoiser \
D(x; σ) = Σ_j w_j y_j, w = softmax_j(−||x − y_j||² / 2σ²) (the minimiser of EDM's eq. 2 loss, Karras et al. 2022); \
8gaussians and Gaussian spectra use their closed forms.";
    pub const TWO_DIRACS: &str = "1-D data at ±1: EDM's figure 3 (Karras et al. 2022). Trajectories bend only in a narrow σ band.";
    pub const GAUSSIAN: &str = "N(0, diag λ): D = λ/(λ + σ²) x per direction, so every step, the output variance and \
KL(p_data || p_out) = ½ Σ_k (λ_k/v_k − 1 + ln(v_k/λ_k)) are exact (science.md §7; seed 004, arXiv 2601.13602). \
Type eigenvalues separated by commas, then Enter.";
    pub const POINTS: &str =
        "Points drawn from the toy's generator; the ideal denoiser memorises this finite set.";
    pub const OPEN_FOLDER: &str = "A folder of .png/.jpg images, resized to size × size, grey or RGB, scaled to [−1, 1]; \
sampled with the ideal empirical denoiser.";
    pub const OPEN_NPY: &str =
        "An [N, D] .npy file (float or integer) as a finite data set; ideal empirical denoiser.";
    pub const IMAGE_SIZE: &str = "Side of the resized images (pixels); D = size² (× 3 for RGB).";
    pub const DENOISER: &str = "exact: D(x; σ) = E[y | x] for x = y + σ n (EDM convention, Karras et al. 2022, §2): \
softmax-weighted data mean for finite sets, closed forms for Gaussians and mixtures. Learned models come later.";
    pub const SAMPLER: &str = "euler: x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i, d = (x − D(x; σ))/σ (probability-flow ODE, EDM eq. 3). \
heun: EDM Algorithm 1, Euler predictor + trapezoid corrector, 2N − 1 evaluations. \
edm: EDM Algorithm 2, churn then a Heun step. \
euler-a: k-diffusion's Euler ancestral. \
dpmpp-2m: DPM-Solver++(2M) (Lu et al. 2022), multistep in t = −ln σ.";
    pub const STEPS: &str = "N: σ_0 > … > σ_{N−1} = σ_min, then σ_N = 0 (EDM Alg. 1).";
    pub const SCHEDULE: &str = "u = i/(N−1). karras: σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ (EDM eq. 5). \
log: equal steps in ln σ. uniform: equal steps in σ. \
vp: σ(t) = √(exp(β_d t²/2 + β_min t) − 1), t = 1 + u (ε_s − 1), β_d = 19.9, β_min = 0.1 (EDM Table 1). \
tangent: σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c)) (seed 004, arXiv 2601.13602; c = 1 is AYS kl_optimal). \
info: σ_i at equal quantiles of the data's information profile mmse(σ)/σ² per d ln σ on [σ_min, σ_max] \
(InfoNoise, seed 003, arXiv 2602.18647; exact for analytic data).";
    pub const TANGENT_AUTO: &str = "c minimising the closed-form Gaussian KL for the data's covariance spectrum \
(one eigenvalue λ: c ≈ √λ; seed 004).";
    pub const TANGENT_C: &str =
        "c of σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c)); c = 1 is kl_optimal.";
    pub const RHO: &str = "ρ of Karras' schedule σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ; EDM eq. 5 uses ρ = 7 \
(ρ = 1 is uniform, large ρ crowds steps near σ_min).";
    pub const SIGMA_MIN: &str = "σ_min, the last non-zero noise level (EDM: 0.002).";
    pub const SIGMA_MAX: &str = "σ_max = σ_0, x_0 = σ_0 z (EDM: 80).";
    pub const ADAPTIVE: &str = "San-Roman et al. 2021 (arXiv 2104.02600): after each step estimate σ_hat(x) and re-plan the \
remaining steps from σ_hat down to σ_min with the same family (the next level makes at least half the planned \
progress in ln σ, so an unidentifiable σ_hat cannot stall it).";
    pub const CHURN: &str = "γ_i = min(S_churn/N, √2 − 1) for S_tmin ≤ σ_i ≤ S_tmax, else 0; t_hat = σ_i (1 + γ_i), \
x_hat = x_i + √(t_hat² − σ_i²) S_noise ε, then a Heun step from t_hat. EDM, Karras et al. 2022, Alg. 2. \
Acts in the edm sampler (heun switches to edm, which equals heun at S_churn = 0).";
    pub const TMIN: &str =
        "Churn only where S_tmin ≤ σ_i ≤ S_tmax (EDM Alg. 2; ImageNet-64: 0.05).";
    pub const TMAX: &str = "Churn only where S_tmin ≤ σ_i ≤ S_tmax (EDM Alg. 2; ImageNet-64: 50).";
    pub const TMAX_INF: &str = "S_tmax = ∞: churn at every σ_i ≥ S_tmin.";
    pub const SNOISE: &str = "x_hat = x_i + √(t_hat² − σ_i²) S_noise ε (t_hat = σ_i (1 + γ_i)): S_noise > 1 offsets the denoiser's detail loss \
(EDM Alg. 2; typical 1.000–1.011, ImageNet-64: 1.003). Also scales euler-a's noise.";
    pub const ETA: &str = "Euler ancestral: σ_up = min(σ', η √(σ'² (σ² − σ'²)/σ²)), σ_down = √(σ'² − σ_up²); \
Euler to σ_down, add σ_up ε (k-diffusion). η = 0 is Euler.";
    pub const CFG: &str = "D_w = D(x; σ, none) + w (D(x; σ, c) − D(x; σ, none)); w = 1 is the plain conditional model, \
w = 0 the unconditional one. Classifier-free guidance, Ho & Salimans 2022 (arXiv 2207.12598).";
    pub const CLASS: &str = "c, the class CFG conditions on (labelled data only).";
    pub const NAG: &str = "D_w = D(x; σ) + w (D(x; σ) − D(x; none)): the score (w + 1) s(x|σ) − w s(x), with s(x) the \
score of the noise-unconditional p(x) = ∫ p(x; σ') π(σ') dσ'. Noise Awareness Guidance, Zhong et al. 2025 \
(arXiv 2510.12497); paper defaults w = 3, or 2 with CFG. With this exact model the correction is stiff \
(it grows like σ²/σ_hat² for states cleaner than scheduled): with 18 steps w <= 0.5 stays stable, larger w overshoots.";
    pub const NAG_PRIOR: &str = "π(σ) of NAG's noise-unconditional model: EDM's training log-normal ln σ ~ N(−1.2, 1.2²), \
or log-uniform over [σ_min, σ_max] (science.md §4).";
    pub const SEED: &str = "x_0 = σ_0 z, z ~ N(0, I) drawn from this seed, one stream per sample: a changed setting \
reruns the same noise, so the difference on screen is the setting's effect alone.";
    pub const BATCH: &str = "Particles sampled at once.";
    pub const BACKEND: &str =
        "Where the denoiser's heavy kernels run: auto (a GPU when there is one), gpu, cpu.";
    pub const PRECISION: &str = "Denoiser arithmetic; sampler state updates are always f64.";
    pub const DIAGNOSTICS: &str = "Per step: σ_hat(x_i) from the exact posterior p(σ|x) prop. to p(x; σ) π(σ) (log-sum-exp on a \
log grid), δ = ln(σ_hat/σ_i), the turning angle between d_i and d'_i and the local error |h| ||d'_i − d_i||/2 \
(science.md §5–6).";
    pub const SUBSET: &str =
        "Rows of the batch whose σ_hat gives the median and 10–90% band (a fixed random subset).";
    pub const PLAY: &str =
        "Replay the recorded states x_0 … x_N (the run itself takes milliseconds).";
    pub const PAUSE: &str = "Hold the shown state.";
    pub const STEP: &str = "One state forward.";
    pub const FOLLOW: &str = "Show the newest state of each run.";
    pub const RERUN: &str = "Run the current settings again (same seed, same noise).";
    pub const RERUN_ON_CHANGE: &str =
        "Start a new run whenever a setting changes; the old run stops at its next step.";
    pub const RESET: &str = "Back to the default scene: 8gaussians, exact denoiser, heun, 18 karras steps, 1000 particles.";
    pub const NEW_SEED: &str = "Next seed: new initial noise z.";
    pub const SHOW_DATA: &str = "Draw the data set behind the denoiser.";
    pub const SHOW_PATHS: &str = "Draw the paths x_0 -> x_i of the first particles (2-D), or trajectories against σ \
(1-D, EDM fig. 3).";
    pub const SHOW_DENOISED: &str =
        "Draw D(x_i), the denoiser's estimate of the clean data at the shown step.";
    pub const SHOW_ARROWS: &str = "Each particle's Euler step x_i -> x_i + (1 − σ_{i+1}/σ_i)(D(x_i) − x_i): the ODE \
direction dx/dσ = (x − D)/σ at the particle, scaled to this step.";
    pub const SHOW_BASELINE: &str =
        "Overlay the pinned baseline (dashed) and show its states beside the live ones.";
    pub const PLAY_SPEED: &str = "Replay speed, states per second.";

    /// Every tooltip, for the glyph test.
    pub const ALL: &[&str] = &[
        DATA,
        TWO_DIRACS,
        GAUSSIAN,
        POINTS,
        OPEN_FOLDER,
        OPEN_NPY,
        IMAGE_SIZE,
        DENOISER,
        SAMPLER,
        STEPS,
        SCHEDULE,
        TANGENT_AUTO,
        TANGENT_C,
        RHO,
        SIGMA_MIN,
        SIGMA_MAX,
        ADAPTIVE,
        CHURN,
        TMIN,
        TMAX,
        TMAX_INF,
        SNOISE,
        ETA,
        CFG,
        CLASS,
        NAG,
        NAG_PRIOR,
        SEED,
        BATCH,
        BACKEND,
        PRECISION,
        DIAGNOSTICS,
        SUBSET,
        PLAY,
        PAUSE,
        STEP,
        FOLLOW,
        RERUN,
        RERUN_ON_CHANGE,
        RESET,
        NEW_SEED,
        SHOW_DATA,
        SHOW_PATHS,
        SHOW_DENOISED,
        SHOW_ARROWS,
        SHOW_BASELINE,
        PLAY_SPEED,
    ];
}

/// A named f64 slider with a tooltip; returns whether it moved.
fn slider(
    ui: &mut Ui,
    value: &mut f64,
    range: std::ops::RangeInclusive<f64>,
    label: &str,
    tip: &str,
    log: bool,
) -> bool {
    ui.add(Slider::new(value, range).text(label).logarithmic(log))
        .on_hover_text(tip)
        .changed()
}

/// Shows the whole panel; edits `settings`, records actions.
pub fn show(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
    actions: &mut Vec<Action>,
) {
    ui.spacing_mut().slider_width = 150.0;
    egui::CollapsingHeader::new("Data")
        .default_open(true)
        .show(ui, |ui| data_group(ui, settings, state, actions));
    egui::CollapsingHeader::new("Denoiser")
        .default_open(false)
        .show(ui, |ui| {
            ComboBox::from_id_salt("denoiser")
                .selected_text("exact")
                .show_ui(ui, |ui| {
                    ui.label("exact (ideal / closed form)");
                    ui.add_enabled(false, egui::Button::new("learned (later)"));
                })
                .response
                .on_hover_text(tips::DENOISER);
        });
    egui::CollapsingHeader::new("Sampler & schedule")
        .default_open(true)
        .show(ui, |ui| sampler_group(ui, settings));
    egui::CollapsingHeader::new("Stochasticity")
        .default_open(true)
        .show(ui, |ui| stochasticity_group(ui, settings, state));
    egui::CollapsingHeader::new("Guidance")
        .default_open(true)
        .show(ui, |ui| guidance_group(ui, settings, state, info));
    egui::CollapsingHeader::new("Run")
        .default_open(true)
        .show(ui, |ui| run_group(ui, settings, info, actions));
    egui::CollapsingHeader::new("View")
        .default_open(false)
        .show(ui, |ui| view_group(ui, settings));
    if let Some(note) = &state.note {
        ui.separator();
        ui.label(RichText::new(note).italics());
    }
}

/// The data entries of the combo box: (label, spec) for the built-in sources.
fn builtin_data(points: usize) -> Vec<(String, DataSpec)> {
    let mut entries: Vec<(String, DataSpec)> = toys::NAMES
        .iter()
        .filter(|n| **n != "two-diracs")
        .map(|n| {
            (
                format!("toy: {n}"),
                DataSpec::Toy {
                    name: (*n).to_string(),
                    points,
                },
            )
        })
        .collect();
    entries.push((
        "two Diracs (1-D, EDM fig. 3)".into(),
        DataSpec::Toy {
            name: "two-diracs".into(),
            points,
        },
    ));
    entries.push((
        "Gaussian spectrum".into(),
        DataSpec::Gaussian {
            spectrum: vec![4.0, 1.0, 0.25, 0.0625],
        },
    ));
    entries.push(("digits (UCI 8×8)".into(), DataSpec::Digits));
    entries.push(("digits, binarised to ±1".into(), DataSpec::BinaryDigits));
    entries
}

/// Whether two data specs are the same kind of source (a toy of the same name, any Gaussian).
fn same_kind(a: &DataSpec, b: &DataSpec) -> bool {
    match (a, b) {
        (DataSpec::Toy { name: x, .. }, DataSpec::Toy { name: y, .. }) => x == y,
        (DataSpec::Gaussian { .. }, DataSpec::Gaussian { .. }) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A batch that keeps image and digit runs quick (the ideal denoiser is O(B N D)).
fn suggested_batch(data: &DataSpec, batch: usize) -> usize {
    match data {
        DataSpec::Images { .. } => batch.min(64),
        DataSpec::Digits | DataSpec::BinaryDigits | DataSpec::Npy { .. } => batch.min(256),
        _ => batch,
    }
}

/// Switches the data source, keeping the batch quick for heavy data; CFG's class is dropped
/// because class indices belong to a data set.
pub fn set_data(settings: &mut Settings, data: DataSpec) {
    settings.spec.batch = suggested_batch(&data, settings.spec.batch);
    if !same_kind(&settings.spec.data, &data) {
        settings.spec.guidance.class = None;
    }
    settings.spec.data = data;
}

fn spectrum_text(spectrum: &[f64]) -> String {
    spectrum
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn data_group(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    actions: &mut Vec<Action>,
) {
    let points = match &settings.spec.data {
        DataSpec::Toy { points, .. } => *points,
        _ => 4096,
    };
    let current = settings.spec.data.clone();
    let current_label = match &current {
        DataSpec::Toy { name, .. } if name == "two-diracs" => {
            "two Diracs (1-D, EDM fig. 3)".to_string()
        }
        DataSpec::Toy { name, .. } => format!("toy: {name}"),
        DataSpec::Gaussian { .. } => "Gaussian spectrum".into(),
        DataSpec::Digits => "digits (UCI 8×8)".into(),
        DataSpec::BinaryDigits => "digits, binarised to ±1".into(),
        DataSpec::Npy { path, .. } => format!("npy: {}", file_name(path)),
        DataSpec::Images { dir, .. } => format!("images: {}", file_name(dir)),
    };
    let mut chosen = None;
    ComboBox::from_id_salt("data")
        .selected_text(current_label)
        .width(220.0)
        .show_ui(ui, |ui| {
            for (label, spec) in builtin_data(points) {
                let selected = same_kind(&current, &spec);
                let tip = match &spec {
                    DataSpec::Toy { name, .. } if name == "two-diracs" => tips::TWO_DIRACS,
                    DataSpec::Gaussian { .. } => tips::GAUSSIAN,
                    _ => tips::DATA,
                };
                if ui
                    .selectable_label(selected, label)
                    .on_hover_text(tip)
                    .clicked()
                    && !selected
                {
                    chosen = Some(spec);
                }
            }
        })
        .response
        .on_hover_text(tips::DATA);
    if let Some(spec) = chosen {
        if let DataSpec::Gaussian { spectrum } = &spec {
            state.spectrum_text = spectrum_text(spectrum);
        }
        set_data(settings, spec);
    }
    ui.horizontal(|ui| {
        if ui
            .button("Open folder…")
            .on_hover_text(tips::OPEN_FOLDER)
            .clicked()
        {
            actions.push(Action::OpenFolder);
        }
        if ui
            .button("Open .npy…")
            .on_hover_text(tips::OPEN_NPY)
            .clicked()
        {
            actions.push(Action::OpenNpy);
        }
    });
    match &mut settings.spec.data {
        DataSpec::Toy { name, points } if name != "8gaussians" && name != "two-diracs" => {
            ui.add(
                Slider::new(points, 64..=20_000)
                    .logarithmic(true)
                    .text("points"),
            )
            .on_hover_text(tips::POINTS);
        }
        DataSpec::Gaussian { spectrum } => {
            if state.spectrum_text.is_empty() {
                state.spectrum_text = spectrum_text(spectrum);
            }
            ui.horizontal(|ui| {
                let label = ui.label("λ:");
                let edit = ui
                    .add(egui::TextEdit::singleline(&mut state.spectrum_text).desired_width(170.0))
                    .labelled_by(label.id)
                    .on_hover_text(tips::GAUSSIAN);
                if edit.lost_focus() {
                    match parse_spectrum(&state.spectrum_text) {
                        Ok(parsed) => {
                            *spectrum = parsed;
                            state.note = None;
                        }
                        Err(message) => state.note = Some(message),
                    }
                }
            });
        }
        DataSpec::Images { size, rgb, .. } => {
            ui.add(Slider::new(size, 8..=64).text("image size"))
                .on_hover_text(tips::IMAGE_SIZE);
            ui.checkbox(rgb, "RGB").on_hover_text(tips::IMAGE_SIZE);
        }
        _ => {}
    }
}

/// Eigenvalues typed as "4, 1, 0.25": positive, finite, at most 4096 of them.
pub fn parse_spectrum(text: &str) -> Result<Vec<f64>, String> {
    let values = text
        .split([',', ' ', ';'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{}' is not a number", s.trim()))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if values.is_empty() || values.len() > 4096 {
        return Err("give between 1 and 4096 eigenvalues".into());
    }
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(format!("eigenvalue {bad} must be positive"));
    }
    Ok(values)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn sampler_group(ui: &mut Ui, settings: &mut Settings) {
    let spec = &mut settings.spec;
    ComboBox::from_id_salt("sampler")
        .selected_text(format!("sampler: {}", spec.sampler))
        .show_ui(ui, |ui| {
            for &kind in <SamplerKind as clap::ValueEnum>::value_variants() {
                ui.selectable_value(&mut spec.sampler, kind, kind.to_string());
            }
        })
        .response
        .on_hover_text(tips::SAMPLER);
    let schedule = &mut spec.schedule;
    ui.add(
        Slider::new(&mut schedule.steps, 1..=256)
            .logarithmic(true)
            .text("steps N"),
    )
    .on_hover_text(tips::STEPS);
    let family = schedule.kind.name();
    ComboBox::from_id_salt("schedule")
        .selected_text(format!("schedule: {family}"))
        .show_ui(ui, |ui| {
            for kind in ScheduleKind::FAMILIES {
                let selected = schedule.kind.name() == kind.name();
                if ui.selectable_label(selected, kind.name()).clicked() && !selected {
                    schedule.kind = kind;
                }
            }
        })
        .response
        .on_hover_text(tips::SCHEDULE);
    if let ScheduleKind::Tangent { c } = &mut schedule.kind {
        let mut auto = c.is_none();
        if ui
            .checkbox(&mut auto, "auto c (KL-optimal)")
            .on_hover_text(tips::TANGENT_AUTO)
            .changed()
        {
            *c = if auto { None } else { Some(1.0) };
        }
        if let Some(c) = c {
            slider(ui, c, 0.01..=100.0, "c", tips::TANGENT_C, true);
        }
    }
    ui.add_enabled_ui(schedule.kind == ScheduleKind::Karras, |ui| {
        slider(
            ui,
            &mut schedule.rho,
            1.0..=20.0,
            "ρ (rho)",
            tips::RHO,
            false,
        );
    });
    ui.add_enabled_ui(schedule.kind != ScheduleKind::Vp, |ui| {
        slider(
            ui,
            &mut schedule.sigma_min,
            1e-4..=0.5,
            "σ_min",
            tips::SIGMA_MIN,
            true,
        );
        slider(
            ui,
            &mut schedule.sigma_max,
            1.0..=500.0,
            "σ_max",
            tips::SIGMA_MAX,
            true,
        );
    });
    ui.checkbox(&mut spec.adaptive, "adaptive (re-plan from σ_hat)")
        .on_hover_text(tips::ADAPTIVE);
}

fn stochasticity_group(ui: &mut Ui, settings: &mut Settings, state: &mut ControlsState) {
    let spec = &mut settings.spec;
    let st = &mut spec.stochasticity;
    if slider(
        ui,
        &mut st.churn,
        0.0..=100.0,
        "S_churn",
        tips::CHURN,
        false,
    ) && st.churn > 0.0
        && spec.sampler == SamplerKind::Heun
    {
        // EDM Alg. 2 at S_churn = 0 is Alg. 1 (heun), so this only adds the churn.
        spec.sampler = SamplerKind::Edm;
        state.note = Some(
            "S_churn acts in EDM's stochastic sampler: heun -> edm (identical at S_churn = 0)."
                .into(),
        );
    }
    slider(ui, &mut st.tmin, 0.0..=10.0, "S_tmin", tips::TMIN, false);
    let mut infinite = st.tmax >= f64::MAX;
    ui.horizontal(|ui| {
        ui.add_enabled_ui(!infinite, |ui| {
            let mut shown = if infinite { 80.0 } else { st.tmax };
            if slider(ui, &mut shown, 0.2..=80.0, "S_tmax", tips::TMAX, true) {
                st.tmax = shown;
            }
        });
        if ui
            .checkbox(&mut infinite, "∞")
            .on_hover_text(tips::TMAX_INF)
            .changed()
        {
            st.tmax = if infinite { f64::MAX } else { 50.0 };
        }
    });
    // Keep S_tmin <= S_tmax so every spec the sliders make is valid.
    if st.tmin > st.tmax {
        st.tmin = st.tmax;
    }
    slider(
        ui,
        &mut st.snoise,
        1.0..=1.011,
        "S_noise",
        tips::SNOISE,
        false,
    );
    ui.add_enabled_ui(spec.sampler == SamplerKind::EulerAncestral, |ui| {
        slider(ui, &mut st.eta, 0.0..=1.0, "η (eta)", tips::ETA, false);
    });
    if !spec.sampler.uses_noise() && st.churn > 0.0 {
        ui.label(RichText::new(format!("S_churn has no effect in {}", spec.sampler)).weak());
    }
}

fn guidance_group(
    ui: &mut Ui,
    settings: &mut Settings,
    state: &mut ControlsState,
    info: &ControlsInfo,
) {
    let g = &mut settings.spec.guidance;
    ui.add_enabled_ui(info.classes > 0, |ui| {
        if slider(ui, &mut g.cfg, 0.0..=8.0, "CFG w", tips::CFG, false)
            && g.cfg != 1.0
            && g.class.is_none()
        {
            // CFG acts on the class condition; without one it passes through.
            g.class = Some(ClassSpec::All(0));
            state.note = Some("CFG conditions on a class: class 0 selected.".into());
        }
        let label = match &g.class {
            None => "class: none".to_string(),
            Some(ClassSpec::All(c)) => format!("class: {c}"),
            Some(ClassSpec::File(p)) => format!("classes: {}", file_name(p)),
        };
        ComboBox::from_id_salt("class")
            .selected_text(label)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut g.class, None, "none (unconditional)");
                for c in 0..info.classes.min(256) as u32 {
                    ui.selectable_value(
                        &mut g.class,
                        Some(ClassSpec::All(c)),
                        format!("class {c}"),
                    );
                }
            })
            .response
            .on_hover_text(tips::CLASS);
    })
    .response
    .on_disabled_hover_text(
        "The shown data has no labels; CFG needs classes (toy: moons, rings, 8gaussians, digits).",
    );
    slider(ui, &mut g.nag, 0.0..=8.0, "NAG w", tips::NAG, false);
    let lognormal = matches!(g.nag_prior, SigmaPrior::LogNormal { .. });
    ComboBox::from_id_salt("nag_prior")
        .selected_text(if lognormal {
            "NAG π(σ): log-normal"
        } else {
            "NAG π(σ): log-uniform"
        })
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(lognormal, "log-normal (EDM training)")
                .clicked()
            {
                g.nag_prior = SigmaPrior::edm_training();
            }
            if ui
                .selectable_label(!lognormal, "log-uniform [σ_min, σ_max]")
                .clicked()
            {
                g.nag_prior = SigmaPrior::LogUniform {
                    lo: settings.spec.schedule.sigma_min,
                    hi: settings.spec.schedule.sigma_max,
                };
            }
        })
        .response
        .on_hover_text(tips::NAG_PRIOR);
}

fn run_group(ui: &mut Ui, settings: &mut Settings, info: &ControlsInfo, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        let label = ui.label("seed");
        ui.add(egui::DragValue::new(&mut settings.spec.seed).speed(1.0))
            .labelled_by(label.id)
            .on_hover_text(tips::SEED);
        if ui
            .button("new seed")
            .on_hover_text(tips::NEW_SEED)
            .clicked()
        {
            settings.spec.seed = settings.spec.seed.wrapping_add(1);
        }
    });
    ui.add(
        Slider::new(&mut settings.spec.batch, 1..=20_000)
            .logarithmic(true)
            .text("batch"),
    )
    .on_hover_text(tips::BATCH);
    ui.horizontal(|ui| {
        let spec = &mut settings.spec;
        ComboBox::from_id_salt("backend")
            .selected_text(format!("backend: {}", backend_name(spec.backend)))
            .show_ui(ui, |ui| {
                for b in [BackendChoice::Auto, BackendChoice::Gpu, BackendChoice::Cpu] {
                    ui.selectable_value(&mut spec.backend, b, backend_name(b));
                }
            })
            .response
            .on_hover_text(tips::BACKEND);
        ComboBox::from_id_salt("precision")
            .selected_text(if spec.precision == Precision::F64 {
                "f64"
            } else {
                "f32"
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut spec.precision, Precision::F32, "f32");
                ui.selectable_value(&mut spec.precision, Precision::F64, "f64");
            })
            .response
            .on_hover_text(tips::PRECISION);
    });
    let diag = &mut settings.spec.diagnostics;
    ui.checkbox(&mut diag.enabled, "diagnostics")
        .on_hover_text(tips::DIAGNOSTICS);
    ui.add_enabled(
        diag.enabled,
        Slider::new(&mut diag.subset, 8..=1024)
            .logarithmic(true)
            .text("σ_hat subset"),
    )
    .on_hover_text(tips::SUBSET);
    ui.horizontal(|ui| {
        if info.playing {
            if ui.button("Pause").on_hover_text(tips::PAUSE).clicked() {
                actions.push(Action::Pause);
            }
        } else if ui.button("Play").on_hover_text(tips::PLAY).clicked() {
            actions.push(Action::Play);
        }
        if ui.button("Step").on_hover_text(tips::STEP).clicked() {
            actions.push(Action::Step);
        }
        if ui.button("Live").on_hover_text(tips::FOLLOW).clicked() {
            actions.push(Action::FollowLive);
        }
    });
    ui.horizontal(|ui| {
        let rerun = egui::Button::new(if info.dirty { "Run changes" } else { "Rerun" })
            .selected(info.dirty);
        if ui.add(rerun).on_hover_text(tips::RERUN).clicked() {
            actions.push(Action::Rerun);
        }
        ui.checkbox(&mut settings.view.rerun_on_change, "rerun on change")
            .on_hover_text(tips::RERUN_ON_CHANGE);
    });
    if ui
        .button("Reset to default scene")
        .on_hover_text(tips::RESET)
        .clicked()
    {
        actions.push(Action::ResetScene);
    }
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Gpu => "gpu",
        BackendChoice::Cpu => "cpu",
    }
}

fn view_group(ui: &mut Ui, settings: &mut Settings) {
    let v = &mut settings.view;
    ui.checkbox(&mut v.show_data, "data")
        .on_hover_text(tips::SHOW_DATA);
    ui.checkbox(&mut v.show_paths, "paths / trajectories")
        .on_hover_text(tips::SHOW_PATHS);
    ui.add_enabled(
        v.show_paths,
        Slider::new(&mut v.paths, 1..=1000)
            .logarithmic(true)
            .text("paths"),
    )
    .on_hover_text(tips::SHOW_PATHS);
    ui.checkbox(&mut v.show_denoised, "D(x_i)")
        .on_hover_text(tips::SHOW_DENOISED);
    ui.checkbox(&mut v.show_arrows, "ODE direction arrows")
        .on_hover_text(tips::SHOW_ARROWS);
    ui.checkbox(&mut v.show_baseline, "baseline overlay")
        .on_hover_text(tips::SHOW_BASELINE);
    ui.add(
        Slider::new(&mut v.play_speed, 1.0..=60.0)
            .logarithmic(true)
            .text("replay states/s"),
    )
    .on_hover_text(tips::PLAY_SPEED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectra_parse_or_explain() {
        assert_eq!(parse_spectrum("4, 1,0.25"), Ok(vec![4.0, 1.0, 0.25]));
        assert!(parse_spectrum("").is_err());
        assert!(parse_spectrum("1, x").is_err_and(|e| e.contains("'x'")));
        assert!(parse_spectrum("1, -2").is_err_and(|e| e.contains("positive")));
    }

    #[test]
    fn heavy_data_gets_a_quick_batch_and_loses_its_class() {
        let mut s = Settings::default_scene();
        s.spec.guidance.class = Some(ClassSpec::All(3));
        set_data(
            &mut s,
            DataSpec::Images {
                dir: "x".into(),
                size: 32,
                rgb: false,
            },
        );
        assert_eq!(s.spec.batch, 64);
        assert_eq!(s.spec.guidance.class, None);
    }

    #[test]
    fn every_character_of_the_app_renders_with_the_default_fonts() {
        let ctx = egui::Context::default();
        // Fonts load on the first pass.
        let mut output = ctx.run_ui(egui::RawInput::default(), |_| {});
        output.textures_delta.clear();
        let font = egui::FontId::proportional(14.0);
        // Every tooltip and label lives in these sources; all their characters must render.
        let sources = [
            include_str!("mod.rs"),
            include_str!("controls.rs"),
            include_str!("states_view.rs"),
            include_str!("sigma_plot.rs"),
            include_str!("curvature_plot.rs"),
            include_str!("schedule_plot.rs"),
            include_str!("theory.rs"),
            include_str!("exports.rs"),
        ];
        let missing: std::collections::BTreeSet<char> = ctx.fonts_mut(|f| {
            sources
                .iter()
                .flat_map(|s| s.chars())
                .filter(|c| !c.is_ascii() && !f.has_glyph(&font, *c))
                .collect()
        });
        assert!(missing.is_empty(), "no glyph for {missing:?}");
    }
}
