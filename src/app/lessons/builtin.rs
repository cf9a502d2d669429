//! The built-in lessons, each a scene and 2-4 stages, written for a class seeing diffusion
//! sampling for the first time. Every stage is a typed edit of the stage before; the file form
//! (a merge patch per stage) is computed from it, so a built-in lesson saves and reloads as any
//! lesson file does.

use serde_json::Value;

use super::{ControlRules, FORMAT, Lesson, Stage, VERSION, diff_patch};
use crate::app::controls::Control;
use crate::app::settings::{Settings, Tab};
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;
use crate::data::DataSpec;
use crate::run::spec::ClassSpec;

/// Lessons that wait for something this build does not have: (title, what it will show).
pub const PLANNED: [(&str, &str); 1] = [(
    "Exact vs learned denoiser",
    "Waits for learned denoisers (trained models, the Training tab of issue 10): the same data sampled with the exact denoiser and a learned one side by side, the learned model's noise shift δ, and NAG with its own noise-unconditional D(x; none). Its slot is builtin::PLANNED; it becomes a lesson in builtin::lessons() once a learned model can be chosen.",
)];

/// A stage's words.
struct Words {
    title: &'static str,
    text: &'static str,
    formula: &'static str,
    look_at: &'static str,
    try_this: &'static str,
}

/// Builds a lesson stage by stage from typed edits of the settings.
struct Builder {
    lesson: Lesson,
    last: Settings,
}

fn value(settings: &Settings) -> Value {
    serde_json::to_value(settings).unwrap_or(Value::Null)
}

impl Builder {
    fn new(title: &str, summary: &str, scene: Settings) -> Self {
        Builder {
            lesson: Lesson {
                format: FORMAT.into(),
                version: VERSION,
                title: title.into(),
                summary: summary.into(),
                scene: scene.clone(),
                stages: Vec::new(),
            },
            last: scene,
        }
    }

    /// A stage on `tab` with `open` controls (the rest of the run's locked), after `edit`.
    fn stage(
        mut self,
        words: Words,
        tab: Tab,
        open: &[Control],
        pin_baseline: bool,
        edit: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut next = self.last.clone();
        edit(&mut next);
        self.lesson.stages.push(Stage {
            title: words.title.into(),
            text: words.text.into(),
            formula: words.formula.into(),
            look_at: words.look_at.into(),
            try_this: words.try_this.into(),
            tab,
            change: diff_patch(&value(&self.last), &value(&next)),
            controls: ControlRules::open(open),
            pin_baseline,
        });
        self.last = next;
        self
    }

    fn done(self) -> Lesson {
        self.lesson
    }
}

/// The default scene on other data, with `batch` particles.
fn scene(data: DataSpec, batch: usize) -> Settings {
    let mut s = Settings::default_scene();
    s.spec.data = data;
    s.spec.batch = batch;
    s
}

fn toy(name: &str, points: usize) -> DataSpec {
    DataSpec::Toy {
        name: name.into(),
        points,
    }
}

/// Every built-in lesson, in the order of the Lessons menu.
pub fn lessons() -> Vec<Lesson> {
    vec![
        what_a_sampler_does(),
        where_trajectories_bend(),
        schedules(),
        euler_vs_heun(),
        churn(),
        cfg_on_digits(),
        noise_shift(),
        nag(),
        tangent_law(),
    ]
}

fn what_a_sampler_does() -> Lesson {
    let mut start = scene(toy("moons", 2000), 1000);
    start.view.paths = 60;
    Builder::new(
        "What a sampler does",
        "Particles of pure noise follow the probability-flow ODE onto the data (2-D toy, trajectories).",
        start,
    )
    .stage(
        Words {
            title: "From noise to data",
            text: "Every orange dot is one sample being made. It starts as pure noise, x_0 = σ_0 z with σ_0 = 80, and the sampler moves it down a ladder of noise levels σ_0 > σ_1 > … > σ_N = 0.\n\nThe direction comes from the denoiser D(x; σ): its best guess of the clean point that a state x at noise σ came from. Here the data set is a finite set of points (two moons), so the ideal denoiser is known exactly: a softmax-weighted average of the data points, each weighted by how likely it is to have produced x.\n\nThe sampler follows the probability-flow ODE of EDM (Karras et al. 2022, arXiv 2206.00364), in which the noise level itself is the time.",
            formula: "dx/dσ = (x − D(x; σ)) / σ",
            look_at: "Press Play (or Space): the cloud shrinks and settles onto the moons. Teal dots are D(x_i), the denoiser's guess at each state; thin lines are the paths so far.",
            try_this: "Drag the step slider, or press the Left and Right arrow keys, to move through the states. Click a point in any plot to jump to that step.",
        },
        Tab::States,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "The denoiser leads the way",
            text: "At high noise a state says almost nothing about where it came from, so D(x) is close to the mean of the whole data set: every particle is pulled toward the middle. As σ falls, D(x) commits to one region of the data and the particle follows it.\n\nOne Euler step moves x a fraction (1 − σ_{i+1}/σ_i) of the way toward D(x_i). The arrows draw that step for each particle.",
            formula: "x_{i+1} = x_i + (σ_{i+1} − σ_i) (x_i − D(x_i; σ_i)) / σ_i",
            look_at: "Step through the run: early arrows all point at the centre, late ones at the nearest moon.",
            try_this: "Find the step where the arrows stop pointing at the centre: it is where σ is about the size of the data (σ ≈ 1).",
        },
        Tab::States,
        &[],
        false,
        |s| s.view.show_arrows = true,
    )
    .stage(
        Words {
            title: "Long steps miss",
            text: "Each step follows the slope measured at its start (Euler) or the average of the slopes at both ends (Heun). Where the path curves, a long step overshoots or cuts the corner.\n\nWith 18 steps the particles land on the moons. With very few steps they do not: Euler lands near the data's mean, and Heun, which extrapolates a slope measured at the end of a huge step, can throw particles far away (the app then says the run diverged).",
            formula: "Heun: x_{i+1} = x_i + (σ_{i+1} − σ_i) (d_i + d'_i) / 2",
            look_at: "The final samples and the local error plot on the Overview.",
            try_this: "Move steps N to 5, then 3, then 2; switch the sampler between heun and euler.",
        },
        Tab::Overview,
        &[Control::Steps, Control::Sampler],
        false,
        |s| s.view.show_arrows = false,
    )
    .done()
}

fn where_trajectories_bend() -> Lesson {
    let mut start = scene(toy("two-diracs", 2), 400);
    start.view.paths = 80;
    Builder::new(
        "EDM figure 3: where trajectories bend",
        "Two points at ±1: the paths are straight except in a narrow band of σ (1-D, EDM's figure 3).",
        start,
    )
    .stage(
        Words {
            title: "Two points at ±1",
            text: "The data is just two points, −1 and +1: EDM's figure 3 (Karras et al. 2022, arXiv 2206.00364). Each line is one particle's x against σ, high noise on the left.\n\nFor a large σ the denoiser's guess is the mean, D ≈ 0, so x shrinks in proportion to σ: a straight line on this plot. For a small σ the guess is the nearest point, D ≈ ±1, and the path is straight again. All the bending happens in between, around σ ≈ 1, the scale of the data, where D switches from the mean to one of the points.",
            formula: "D(x; σ) = tanh(x / σ²) for data at ±1",
            look_at: "Press Play: the bundle of lines splits in two around σ ≈ 1 and is straight everywhere else.",
            try_this: "Hover a trajectory's end points; drag the step slider to the split.",
        },
        Tab::States,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Measuring the bend",
            text: "The turning angle θ_i is the angle between the slope at the start of step i and the slope at the end of its Euler predictor: 0 on a straight path. The local error e_i, half the step length times the change of slope, is what one Euler step misses; Heun corrects most of it.\n\nBoth peak where the trajectories bend, and are small where they are straight: steps spent there are nearly free.",
            formula: "θ_i = angle(d_i, d'_i),   e_i = |σ_{i+1} − σ_i| ||d'_i − d_i|| / 2",
            look_at: "The peak of θ_i and of e_i. Click the peak to see the states there.",
            try_this: "Hover the points of θ_i: each shows its step, σ_i and the other numbers.",
        },
        Tab::Curvature,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Spend the steps where they bend",
            text: "A schedule decides where the N noise levels go. Karras' schedule with ρ = 7 puts many steps at small σ and few at large σ; a uniform schedule (equal steps in σ) spends nearly all of them at large σ, where nothing happens, and crosses the bend in one or two long steps.",
            formula: "σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   u = i/(N − 1)",
            look_at: "The local error and the final states as you change the schedule.",
            try_this: "Switch the schedule to uniform, then log; try ρ = 1 and ρ = 20; lower steps N to 8.",
        },
        Tab::Curvature,
        &[Control::Schedule, Control::Rho, Control::Steps],
        false,
        |_| {},
    )
    .done()
}

fn schedules() -> Lesson {
    Builder::new(
        "Schedules: Karras, uniform, log, tangent",
        "Where the N noise levels go, and what it does to the samples (Schedule tab).",
        Settings::default_scene(),
    )
    .stage(
        Words {
            title: "Karras, ρ = 7",
            text: "A schedule is the ladder σ_0 > σ_1 > … > σ_{N−1} = σ_min, then σ_N = 0. EDM (Karras et al. 2022, arXiv 2206.00364, eq. 5) interpolates linearly in σ^{1/ρ}: ρ = 1 is uniform in σ, and a large ρ crowds the steps near σ_min, where images get their detail. EDM uses ρ = 7.",
            formula: "σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   u = i/(N − 1)",
            look_at: "The bold curve is the chosen family, the dots this run's σ_i, on a log axis; faint curves are the other families.",
            try_this: "Move ρ from 1 to 20 and watch the dots move toward σ_min.",
        },
        Tab::Schedule,
        &[Control::Rho],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Uniform and log-uniform",
            text: "Uniform steps are equal in σ: on a log axis almost all of them sit near σ_max, and the last non-zero step jumps from about 80/17 ≈ 4.7 to 0.002. Log-uniform steps are equal in ln σ: a straight line on this plot, the same number of steps per decade of noise.\n\nThat one jump is too long for Heun: its second slope is measured at σ = 0.002 for a state that still carries noise of about 4.7, so the run diverges and the banner above the plot says why.",
            formula: "uniform: σ_i = (1 − u) σ_max + u σ_min;   log: ln σ_i = (1 − u) ln σ_max + u ln σ_min",
            look_at: "Where each family spends its steps, the banner, and the final samples on the Overview.",
            try_this: "Switch between karras, uniform and log; then look at the Overview.",
        },
        Tab::Schedule,
        &[Control::Schedule, Control::Rho],
        false,
        |s| s.spec.schedule.kind = ScheduleKind::Uniform,
    )
    .stage(
        Words {
            title: "The tangent law",
            text: "For a Gaussian source the KL divergence between the data and the samples has a closed form, and the schedule that minimises its leading term follows a tangent law whose coefficient c comes from the data's covariance spectrum (Sun, Poor & Zhang 2026, \"An Elementary Approach to Scheduling in Generative Diffusion Models\", arXiv 2601.13602). c = 1 is the kl_optimal schedule of \"Align Your Steps\".",
            formula: "σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c))",
            look_at: "The tangent curve against Karras: similar at small σ, different in the middle.",
            try_this: "Untick auto c and move c; compare with karras.",
        },
        Tab::Schedule,
        &[Control::Schedule],
        false,
        |s| s.spec.schedule.kind = ScheduleKind::Tangent { c: Some(1.0) },
    )
    .stage(
        Words {
            title: "Few steps show the difference",
            text: "With 18 steps every reasonable schedule lands close to the data. With six, where the steps go matters: a schedule that crosses the data's scale (σ ≈ 1 here) in one step blurs the samples.",
            formula: "N = 6: 11 evaluations with Heun",
            look_at: "The final samples and the local error on the Overview.",
            try_this: "Switch the family at N = 6; then try N = 4.",
        },
        Tab::Overview,
        &[Control::Schedule, Control::Steps, Control::Rho],
        false,
        |s| s.spec.schedule.steps = 6,
    )
    .done()
}

fn euler_vs_heun() -> Lesson {
    let mut start = scene(toy("moons", 2000), 1000);
    start.spec.schedule.steps = 10;
    Builder::new(
        "Euler vs Heun at equal evaluations",
        "The same budget of 19 denoiser calls spent on 19 Euler steps or 10 Heun steps (curvature, A/B).",
        start,
    )
    .stage(
        Words {
            title: "Heun: 10 steps, 19 evaluations",
            text: "Heun's method (EDM Algorithm 1, Karras et al. 2022, arXiv 2206.00364) takes an Euler step, evaluates the slope again where it landed, and redoes the step with the average of both slopes. It is second order but costs two denoiser evaluations per step (one on the last step, to σ = 0): 10 steps cost 19.",
            formula: "x_{i+1} = x_i + (σ_{i+1} − σ_i) (d_i + d(x'_{i+1}, σ_{i+1})) / 2",
            look_at: "The local error e_i and the straightness of the trajectories.",
            try_this: "Hover the local error points; note the largest one.",
        },
        Tab::Curvature,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Euler: 19 steps, 19 evaluations",
            text: "The same 19 evaluations spent on 19 Euler steps. The baseline (dashed, blue) is Heun's run from the stage before, with the same noise, so the difference is the sampler alone.\n\nEuler's error per step shrinks like h² with the step length h, Heun's like h³: halving the steps to pay for the second evaluation is worth it where the paths curve. That is EDM's figure 2: Heun beats Euler at equal evaluations.",
            formula: "Euler: x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i",
            look_at: "The A/B bar names what changed; compare the final samples side by side on the States tab, and δ on Noise level.",
            try_this: "Flip between live and baseline (F) on the States tab.",
        },
        Tab::Overview,
        &[],
        true,
        |s| {
            s.spec.sampler = SamplerKind::Euler;
            s.spec.schedule.steps = 19;
        },
    )
    .stage(
        Words {
            title: "A smaller budget",
            text: "The gap grows as the budget shrinks. With 9 evaluations, Heun takes 5 steps and Euler 9.",
            formula: "Heun: 2N − 1 evaluations;  Euler: N",
            look_at: "How far each run's samples are from the moons.",
            try_this: "Set Heun to 5 steps, pin it, then Euler to 9 steps.",
        },
        Tab::Overview,
        &[Control::Sampler, Control::Steps],
        false,
        |_| {},
    )
    .done()
}

fn churn() -> Lesson {
    let mut start = Settings::default_scene();
    start.spec.sampler = SamplerKind::Edm;
    start.spec.stochasticity.tmin = 0.05;
    start.spec.stochasticity.tmax = 50.0;
    start.spec.stochasticity.snoise = 1.003;
    Builder::new(
        "S_churn: noise added on the way down",
        "EDM's stochastic sampler adds fresh noise at each step; with an exact denoiser it cannot help.",
        start,
    )
    .stage(
        Words {
            title: "The stochastic sampler at S_churn = 0",
            text: "EDM's Algorithm 2 (Karras et al. 2022, arXiv 2206.00364) first raises the noise of the state from σ_i to t_hat_i = σ_i (1 + γ_i) by adding fresh noise, then takes a Heun step from t_hat_i down to σ_{i+1}. At S_churn = 0, γ_i = 0 and it is exactly Heun's deterministic sampler.",
            formula: "γ_i = min(S_churn/N, √2 − 1),  t_hat_i = σ_i (1 + γ_i),  x_hat_i = x_i + √(t_hat_i² − σ_i²) S_noise ε",
            look_at: "σ_hat against σ_i: on the diagonal at high noise.",
            try_this: "Hover the points of δ_i.",
        },
        Tab::NoiseLevel,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Now move S_churn to 40",
            text: "Churn re-injects noise that the next steps must remove again. EDM uses it to wash out the errors a learned denoiser accumulates: the fresh noise pulls the states back toward the noise level they should have. With the exact denoiser there are no such errors, so churn can only cost accuracy at a fixed step count.\n\nThe run before is pinned as the baseline (dashed): same seed, same noise at x_0.",
            formula: "S_churn = 40, N = 18: γ_i = min(40/18, 0.414) = 0.414 inside [S_tmin, S_tmax]",
            look_at: "δ_i and the final samples against the dashed baseline.",
            try_this: "Move S_churn to 40, then 100; narrow the band with S_tmin and S_tmax.",
        },
        Tab::NoiseLevel,
        &[Control::Churn, Control::ChurnBand, Control::Snoise],
        true,
        |_| {},
    )
    .done()
}

fn cfg_on_digits() -> Lesson {
    let mut start = scene(DataSpec::Digits, 64);
    start.spec.guidance.class = Some(ClassSpec::All(3));
    Builder::new(
        "Classifier-free guidance on digits",
        "Conditioning on a class and guiding past it: CFG's weight w on the UCI digits.",
        start,
    )
    .stage(
        Words {
            title: "Conditional sampling: class 3",
            text: "With a class c the denoiser only knows the data of that class: here, the ideal denoiser of the 3s among the UCI 8×8 digits. w = 1 is this conditional model unchanged: every sample becomes a 3 from the data set.",
            formula: "D_w = D(x; σ, none) + w (D(x; σ, c) − D(x; σ, none))",
            look_at: "The image grids: x_i on top, D(x_i) below, as the run goes.",
            try_this: "Play the run; watch D(x_i) settle on 3s long before x_i does.",
        },
        Tab::States,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Guidance w = 3",
            text: "Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598) extrapolates from the unconditional prediction through the conditional one: w > 1 pushes each state further toward what distinguishes class 3 from the rest. With learned models that trades variety for fidelity; with this exact model the states are pushed past the data, and only the end of the run pulls them back onto real digits.\n\nThe baseline (w = 1) is pinned: same noise.",
            formula: "w = 3:  D_w = D_u + 3 (D_c − D_u)",
            look_at: "D(x_i) mid-run against the baseline: saturated, high-contrast digits (values beyond [−1, 1] are clipped in the grid).",
            try_this: "Flip between live and baseline (F) at step 8.",
        },
        Tab::States,
        &[],
        true,
        |s| s.spec.guidance.cfg = 3.0,
    )
    .stage(
        Words {
            title: "Your turn",
            text: "w = 0 is the unconditional model (any digit), w = 1 the conditional one; beyond 1 is guidance.",
            formula: "",
            look_at: "The samples and σ_hat on the Noise level tab.",
            try_this: "Try w = 0, 1, 3, 8 and another class.",
        },
        Tab::States,
        &[Control::Cfg, Control::Class],
        false,
        |_| {},
    )
    .done()
}

/// 32 eigenvalues from 1 down to 1e-5, evenly spaced in log (three significant digits, so a
/// lesson file shows and stores them exactly): a power-law spectrum like that of natural images,
/// whose small directions keep σ_hat informative down to σ_min.
fn power_law_spectrum() -> Vec<f64> {
    (0..32)
        .map(|k| {
            let exact = 10f64.powf(-5.0 * k as f64 / 31.0);
            format!("{exact:.2e}").parse().unwrap_or(exact)
        })
        .collect()
}

fn noise_shift() -> Lesson {
    Builder::new(
        "Noise shift: what σ_hat is",
        "How noisy a state looks against how noisy it should be, and the exact answer for a Gaussian.",
        scene(
            DataSpec::Gaussian {
                spectrum: power_law_spectrum(),
            },
            1000,
        ),
    )
    .stage(
        Words {
            title: "How noisy does a state look?",
            text: "A state x_i is supposed to be data plus noise of level σ_i. σ_hat(x) estimates the noise level from the state alone: the posterior p(σ | x) prop. to p(x; σ) π(σ) over a grid of σ, summarised as exp E[ln σ | x] (noise-level estimation as in San-Roman et al. 2021, arXiv 2104.02600).\n\nThe noise shift δ_i = ln(σ_hat / σ_i) compares the two: δ > 0 means the state looks noisier than scheduled. Zhong et al. 2025 (arXiv 2510.12497) found trained models drift that way late in sampling.\n\nThe data here is a 32-dimensional Gaussian whose variances fall from 1 to 10^-5, like the spectrum of natural images: its small directions let σ_hat see even very small noise.",
            formula: "δ_i = ln σ_hat(x_i) − ln σ_i",
            look_at: "With Heun's 18 steps the median σ_hat sits on the diagonal: δ ≈ 0, slightly above in the late steps.",
            try_this: "Hover the points; note the 10–90% band over the batch.",
        },
        Tab::NoiseLevel,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Euler: cleaner than scheduled",
            text: "The discretisation itself moves the states off schedule. For a Gaussian each direction of the state is multiplied by a number at every step, so the shift is exact: Euler leaves the states cleaner than scheduled (δ < 0, growing toward the end), Heun slightly noisier.\n\nThe baseline (dashed) is Heun's run.",
            formula: "Euler: x_{i+1} = (1 + h σ_i / (λ + σ_i²)) x_i,   h = σ_{i+1} − σ_i",
            look_at: "δ_i falling below 0 in the late steps, against the dashed baseline near 0.",
            try_this: "Click the most negative δ_i to see its state.",
        },
        Tab::NoiseLevel,
        &[],
        true,
        |s| s.spec.sampler = SamplerKind::Euler,
    )
    .stage(
        Words {
            title: "The exact answer",
            text: "For N(0, diag λ) the state variance v_i of every direction follows exactly (Sun, Poor & Zhang 2026, arXiv 2601.13602). The schedule promises λ + σ_i² (dashed); where the exact v_i (lines) lies below, the state is cleaner than scheduled. The dots are this batch's measured variances: they sit on the lines.",
            formula: "v_{i+1} = f_i² v_i,  f_i = 1 + h σ_i / (λ + σ_i²) (Euler)",
            look_at: "Lines against dashes, and the exact KL in the header.",
            try_this: "Change the steps and the sampler; watch KL(p_data || p_out).",
        },
        Tab::Theory,
        &[Control::Steps, Control::Sampler],
        false,
        |_| {},
    )
    .done()
}

fn nag() -> Lesson {
    Builder::new(
        "NAG: guiding the noise level",
        "Noise Awareness Guidance on an exact model: stable at a small weight, divergent at the paper's.",
        scene(toy("8gaussians", 4096), 300),
    )
    .stage(
        Words {
            title: "What NAG corrects",
            text: "Noise Awareness Guidance (Zhong et al. 2025, arXiv 2510.12497) pushes each state toward looking as noisy as its scheduled σ. It adds w times the gradient of log p(σ | x) to the score; in denoiser form it extrapolates away from D(x; none), the prediction of a model that does not know σ.\n\nHere D(x; none) is exact: the score of p(x) = ∫ p(x; σ') π(σ') dσ', with π EDM's training distribution of σ.",
            formula: "D_w = D(x; σ) + w (D(x; σ) − D(x; none))",
            look_at: "σ_hat and δ without guidance (w = 0).",
            try_this: "Hover δ_i in the late steps.",
        },
        Tab::NoiseLevel,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "A small weight: w = 0.5",
            text: "At w = 0.5 the run stays stable and the samples land on the data. Compare δ with the baseline (w = 0, dashed): the guidance moves σ_hat, and not only toward the diagonal; at high noise the guided states look noisier than scheduled. Whether NAG pulls a learned model's late-step shift toward 0, as the paper reports, is a claim about learned models that this exact one cannot settle.",
            formula: "correction: −w (1 − σ²/σ_hat²)(x − D)",
            look_at: "δ_i against the dashed baseline.",
            try_this: "Compare the samples on the Overview.",
        },
        Tab::NoiseLevel,
        &[],
        true,
        |s| s.spec.guidance.nag = 0.5,
    )
    .stage(
        Words {
            title: "The paper's weight: w = 3",
            text: "With the exact noise-unconditional model the correction grows like σ²/σ_hat² for a state cleaner than scheduled, without bound: at w = 3 each step overshoots the last and the run diverges. The banner says so and why.\n\nThe paper's w = 2–3 is for learned models, whose D(x; none) is a smooth average over noise levels and stays bounded. More steps also tame the exact model.",
            formula: "σ_hat < σ:  (σ/σ_hat)² >> 1",
            look_at: "The banner, the red samples on the States tab, and σ_hat at the end of the run.",
            try_this: "Raise steps N to 50 at w = 3; lower w until the banner goes.",
        },
        Tab::NoiseLevel,
        &[Control::Nag, Control::Steps],
        false,
        |s| s.spec.guidance.nag = 3.0,
    )
    .done()
}

fn tangent_law() -> Lesson {
    let mut start = scene(
        DataSpec::Gaussian {
            spectrum: vec![0.25],
        },
        1000,
    );
    start.spec.sampler = SamplerKind::Euler;
    start.spec.schedule.steps = 5;
    Builder::new(
        "The tangent law on a Gaussian",
        "For a Gaussian the KL of the samples is exact: the tangent law against Karras (Theory tab).",
        start,
    )
    .stage(
        Words {
            title: "Karras at N = 5, one direction λ = 0.25",
            text: "For a Gaussian source N(0, λ) every step of a deterministic sampler multiplies the state by a number, so the output is Gaussian too and KL(p_data || p_out) has a closed form (Sun, Poor & Zhang 2026, arXiv 2601.13602). The right plot shows it against N for every schedule family with this sampler; the vertical line is this run's N.",
            formula: "KL = ½ Σ_k (λ_k/v_k − 1 + ln(v_k/λ_k))",
            look_at: "The header's exact KL and the family curves at N = 5.",
            try_this: "Hover the curves to read KL at each N.",
        },
        Tab::Theory,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "The tangent law with its best c",
            text: "Minimising the leading term of that KL over schedules gives the tangent law. With one eigenvalue and Euler the best coefficient is c = √λ = 0.5, and at N = 5 the KL drops about ninefold against Karras. The baseline is Karras' run.",
            formula: "σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c)),  c = √λ",
            look_at: "The header: karras KL against tangent KL at this N.",
            try_this: "Compare the states' variances (left) with the baseline.",
        },
        Tab::Theory,
        &[],
        true,
        |s| s.spec.schedule.kind = ScheduleKind::Tangent { c: None },
    )
    .stage(
        Words {
            title: "A wide spectrum",
            text: "One coefficient has to serve every direction. With λ = 9 and λ = 0.01 and Heun's sampler no single c suits both, and at some N Karras wins: the header then says \"higher\". The law is optimal for the leading term as N grows, not at every N.",
            formula: "best c: a 1-D search on the exact KL",
            look_at: "Which family wins at each N on the right.",
            try_this: "Change N and the sampler; watch the header's comparison.",
        },
        Tab::Theory,
        &[Control::Steps, Control::Sampler, Control::Schedule],
        false,
        |s| {
            s.spec.data = DataSpec::Gaussian {
                spectrum: vec![9.0, 0.01],
            };
            s.spec.sampler = SamplerKind::Heun;
        },
    )
    .done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_lesson_is_valid_with_two_to_four_stages() -> crate::error::Result<()> {
        let lessons = lessons();
        assert_eq!(lessons.len(), 9);
        for lesson in &lessons {
            lesson.validate()?;
            assert!(
                (2..=4).contains(&lesson.stages.len()),
                "{}: {} stages",
                lesson.title,
                lesson.stages.len()
            );
            for (k, stage) in lesson.stages.iter().enumerate() {
                assert!(!stage.text.is_empty() && !stage.title.is_empty());
                let settings = lesson.stage_settings(k)?;
                assert_eq!(settings.view.tab, stage.tab);
            }
            // No internal notes in what a class reads.
            let text = lesson.to_json();
            assert!(!text.contains("science.md") && !text.contains("seed 00"));
        }
        Ok(())
    }

    #[test]
    fn stages_carry_their_changes() -> crate::error::Result<()> {
        let nag = nag();
        assert_eq!(nag.stage_settings(0)?.spec.guidance.nag, 0.0);
        assert_eq!(nag.stage_settings(1)?.spec.guidance.nag, 0.5);
        assert_eq!(nag.stage_settings(2)?.spec.guidance.nag, 3.0);
        assert!(nag.stages[1].pin_baseline);
        let euler = euler_vs_heun();
        let s = euler.stage_settings(1)?;
        assert_eq!(
            (s.spec.sampler, s.spec.schedule.steps),
            (SamplerKind::Euler, 19)
        );
        // The change is a small patch, not the whole scene.
        assert_eq!(
            euler.stages[1].change,
            serde_json::json!({"spec": {"sampler": "euler", "schedule": {"steps": 19}}})
        );
        Ok(())
    }
}
