//! The lessons about sampling itself: what a sampler does, where trajectories bend, schedules,
//! Euler against Heun.

use super::super::Lesson;
use super::{Builder, Words, scene, toy};
use crate::app::controls::Control;
use crate::app::settings::{Settings, Tab};
use crate::core::sampler::SamplerKind;
use crate::core::schedule::ScheduleKind;

pub(super) fn what_a_sampler_does() -> Lesson {
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

pub(super) fn where_trajectories_bend() -> Lesson {
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

pub(super) fn schedules() -> Lesson {
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

pub(super) fn euler_vs_heun() -> Lesson {
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
