//! The lessons about noise and guidance: S_churn, CFG on digits, the noise shift, NAG and the
//! tangent law on a Gaussian.

use super::super::Lesson;
use super::{Builder, Words, scene, toy};
use crate::app::controls::Control;
use crate::app::settings::{Settings, Tab};
use crate::core::guidance::{NagForm, NagStep};
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;
use crate::data::DataSpec;
use crate::run::spec::ClassSpec;

pub(super) fn churn() -> Lesson {
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

pub(super) fn cfg_on_digits() -> Lesson {
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

pub(super) fn noise_shift() -> Lesson {
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

pub(super) fn nag() -> Lesson {
    Builder::new(
        "NAG: guiding the noise level",
        "Noise Awareness Guidance on an exact model: stable at a small weight, divergent at the paper's.",
        scene(toy("8gaussians", 4096), 300),
    )
    .stage(
        Words {
            title: "What NAG corrects",
            text: "Noise Awareness Guidance (Zhong et al. 2025, arXiv 2510.12497) pushes each state toward looking as noisy as its scheduled σ. It adds w times the gradient of log p(σ | x) to the score; in denoiser form it extrapolates away from D(x; none), the prediction of a model that does not know σ.\n\nHere D(x; none) is the NAG form \"exact score\": the score of p(x) = ∫ p(x; σ') π(σ') dσ', with π EDM's training distribution of σ, the stiff theoretical limit, stepped as the paper does (NAG step: explicit).",
            formula: "D_w = D(x; σ) + w (D(x; σ) − D(x; none))",
            look_at: "σ_hat and δ without guidance (w = 0).",
            try_this: "Hover δ_i in the late steps.",
        },
        Tab::NoiseLevel,
        &[],
        false,
        |s| {
            s.spec.guidance.nag_form = NagForm::ExactScore;
            s.spec.guidance.nag_step = NagStep::Explicit;
        },
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
            text: "With the exact noise-unconditional model the correction grows like σ²/σ_hat² for a state cleaner than scheduled, without bound: at w = 3 each step overshoots the last and the run diverges. The banner says so and why.\n\nThe paper's w = 2–3 is for learned models, whose D(x; none) is a smooth average over noise levels and stays bounded: the NAG form \"as a classifier-free model learns it\" is that average, exact for this data. More steps also tame the exact score.",
            formula: "σ_hat < σ:  (σ/σ_hat)² >> 1",
            look_at: "The banner, the red samples on the States tab, and σ_hat at the end of the run.",
            try_this: "Raise steps N to 50 at w = 3; lower w until the banner goes; switch the NAG form to the default; or set the NAG step to exponential, which integrates the pull toward the schedule exactly.",
        },
        Tab::NoiseLevel,
        &[Control::Nag, Control::Steps],
        false,
        |s| s.spec.guidance.nag = 3.0,
    )
    .done()
}

pub(super) fn tangent_law() -> Lesson {
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
