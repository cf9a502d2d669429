//! The lesson about learned models: the same digits, noise and sampler with the exact denoiser
//! and with the bundled network, side by side, and the network's noise shift under the exact
//! posterior of the data.

use super::super::Lesson;
use super::{Builder, Words, scene};
use crate::app::ab::AbView;
use crate::app::controls::Control;
use crate::app::settings::Tab;
use crate::data::DataSpec;
use crate::run::spec::DenoiserSpec;

pub(super) fn exact_vs_learned() -> Lesson {
    let mut start = scene(DataSpec::Digits, 64);
    start.view.ab = AbView::SideBySide;
    Builder::new(
        "Exact vs learned denoiser",
        "The same digits, noise and sampler with the exact denoiser and with a trained network, side by side; the network's noise shift measured by the exact posterior.",
        start,
    )
    .stage(
        Words {
            title: "The exact denoiser memorises",
            text: "The exact denoiser of a finite data set is the posterior mean over its points: D(x; σ) = Σ_j softmax_j(−|x − y_j|² / 2σ²) y_j over the 1797 UCI digits. It is the best possible denoiser for this data, and it knows nothing else: at small σ it snaps every state onto the nearest training digit.\n\nSo a sampler driven by it can only reproduce the training set: every final sample is a copy of one of the 1797 digits.",
            formula: "D(x; σ) = Σ_j w_j(x, σ) y_j,   w = softmax(−|x − y_j|² / 2σ²)",
            look_at: "The grids: x_i on top, D(x_i) below; at the end both are training digits, crisp and exact.",
            try_this: "Play the run (Space) and watch D(x_i) jump between digits at mid σ, then settle.",
        },
        Tab::States,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "A network trained on the same digits",
            text: "Now the sampler calls a small network trained on these digits: an MLP (4 layers of 256) trained for 3000 steps with EDM's preconditioning and loss (Karras et al. 2022, arXiv 2206.00364), bundled with noisescope. Same seed, so the same noise x_0 and the same sampler: only the denoiser changed.\n\nA network is a smooth function with a limited capacity and a limited training time, so it cannot be the exact posterior mean. It is smoother than the exact denoiser at small σ: instead of copying a training digit it produces new, slightly blurred ones. The exact run is pinned as the baseline (dashed, right).",
            formula: "D_θ(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x; c_noise(σ))",
            look_at: "Live (the network) beside the baseline (exact): the same noise becomes similar digits, the network's softer and not copies.",
            try_this: "Switch the A/B row to flip (F) at the last step to see what the network changed.",
        },
        Tab::States,
        &[],
        true,
        |s| s.spec.denoiser = DenoiserSpec::Bundled("digits".into()),
    )
    .stage(
        Words {
            title: "The network's noise shift",
            text: "How noisy do the network's states look? σ_hat is measured with the EXACT posterior p(σ | x) of the data, whatever denoiser made the states, so δ_i = ln(σ_hat / σ_i) is the ground-truth noise shift of a real network, not the network judging itself.\n\nThe exact run (dashed) only carries the discretisation's shift. Any extra distance of the live curve is the network's own error accumulating along the path: the exposure bias that NAG (Zhong et al. 2025, arXiv 2510.12497) and EDM's churn try to correct.",
            formula: "δ_i = ln σ_hat(x_i) − ln σ_i,   σ_hat = exp E[ln σ | x] under the exact p(x; σ)",
            look_at: "δ_i of the network against the dashed exact run, above all in the last steps, where σ is small.",
            try_this: "Hover the points of both curves at the same step.",
        },
        Tab::NoiseLevel,
        &[],
        false,
        |_| {},
    )
    .stage(
        Words {
            title: "Your turn",
            text: "Every control works with the network. S_churn adds fresh noise at each step: EDM uses it to wash out a network's errors, which the exact denoiser does not make. NAG extrapolates away from the network's own noise-unconditional branch D(x; none), trained with noise dropout. CFG uses its class-conditional branches.",
            formula: "",
            look_at: "δ_i and the samples against the exact baseline.",
            try_this: "S_churn 40 with the edm sampler; NAG w 1; CFG w 3 on class 3; fewer steps. \"Compare with exact\" (Denoiser group) pins the exact run of any setting.",
        },
        Tab::NoiseLevel,
        &[
            Control::Denoiser,
            Control::Sampler,
            Control::Steps,
            Control::Churn,
            Control::Nag,
            Control::Cfg,
            Control::Class,
        ],
        false,
        |_| {},
    )
    .done()
}
