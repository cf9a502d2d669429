//! Formula and source of each control, shown as its tooltip. Kept in one table so a test can
//! check that every one renders with the app's fonts.

pub const DATA: &str = "The data the exact denoiser knows. Finite sets use the ideal empirical denoiser \
D(x; σ) = Σ_j w_j y_j, w = softmax_j(−||x − y_j||² / 2σ²) (the minimiser of the denoising loss, eq. 2 of EDM, Karras et al. 2022, arXiv 2206.00364); \
8gaussians and Gaussian spectra use their closed forms.";
pub const TWO_DIRACS: &str = "1-D data at ±1: figure 3 of EDM (Karras et al. 2022, arXiv 2206.00364). Trajectories bend only in a narrow σ band.";
pub const GAUSSIAN: &str = "N(0, diag λ): D = λ/(λ + σ²) x per direction, so every step, the output variance and \
KL(p_data || p_out) = ½ Σ_k (λ_k/v_k − 1 + ln(v_k/λ_k)) are exact (Sun, Poor & Zhang 2026, arXiv 2601.13602). \
Type eigenvalues separated by commas, then Enter.";
pub const POINTS: &str =
    "Points drawn from the toy's generator; the ideal denoiser memorises this finite set.";
pub const OPEN_FOLDER: &str = "A folder of .png/.jpg images, resized to size × size, grey or RGB, scaled to [−1, 1]; \
sampled with the ideal empirical denoiser.";
pub const OPEN_NPY: &str =
    "An [N, D] .npy file (float or integer) as a finite data set; ideal empirical denoiser.";
pub const IMAGE_SIZE: &str = "Side of the resized images (pixels); D = size² (× 3 for RGB).";
pub const DENOISER: &str = "What the sampler calls for D(x; σ): the exact denoiser of the data, or a network trained on it \
(bundled: moons, moons-nag and digits; or one trained or opened in this run of the app). The noise-level plots judge every denoiser \
by the exact posterior of the data, so a network's σ_hat is the noise shift it really causes.";
pub const DENOISER_EXACT: &str = "D(x; σ) = E[y | x] for x = y + σ n (the convention of EDM, Karras et al. 2022, arXiv 2206.00364, §2): \
softmax-weighted data mean for finite sets, closed forms for Gaussians and mixtures.";
pub const OPEN_CHECKPOINT: &str = "A model written by `noisescope train` or the Training tab: PATH.safetensors with PATH.json beside it. \
It loads in the background; one trained on other data is named in the status bar and not used.";
pub const COMPARE_EXACT: &str = "Runs the shown run's settings and noise (same seed) with the exact denoiser and pins that run as the \
baseline: every plot overlays both and the states sit side by side. When the shown run is exact, it pins a learned model's run instead.";
pub const SAMPLER: &str = "euler: x_{i+1} = x_i + (σ_{i+1} − σ_i) d_i, d = (x − D(x; σ))/σ (the probability-flow ODE, eq. 3 of EDM, Karras et al. 2022, arXiv 2206.00364). \
heun: EDM Algorithm 1, Euler predictor + trapezoid corrector, 2N − 1 evaluations. \
edm: EDM Algorithm 2, churn then a Heun step. \
euler-a: Euler ancestral, as in Crowson's k-diffusion library. \
dpmpp-2m: DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095), multistep in t = −ln σ.";
pub const STEPS: &str = "N: σ_0 > … > σ_{N−1} = σ_min, then σ_N = 0 (EDM Alg. 1).";
pub const SCHEDULE: &str = "u = i/(N−1). karras: σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ (eq. 5 of EDM, Karras et al. 2022, arXiv 2206.00364). \
log: equal steps in ln σ. uniform: equal steps in σ. \
vp: σ(t) = √(exp(β_d t²/2 + β_min t) − 1), t = 1 + u (ε_s − 1), β_d = 19.9, β_min = 0.1 (EDM Table 1). \
tangent: σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c)) (Sun, Poor & Zhang 2026, arXiv 2601.13602; c = 1 is the kl_optimal schedule of Align Your Steps). \
info: σ_i at equal quantiles of the data's information profile mmse(σ)/σ² per d ln σ on [σ_min, σ_max] \
(InfoNoise, arXiv 2602.18647; exact for analytic data).";
pub const TANGENT_AUTO: &str = "c minimising the closed-form Gaussian KL for the data's covariance spectrum \
(one eigenvalue λ and the Euler sampler: c = √λ; Sun, Poor & Zhang 2026, arXiv 2601.13602).";
pub const TANGENT_C: &str =
    "c of σ_i = c tan((1 − u) atan(σ_max/c) + u atan(σ_min/c)); c = 1 is kl_optimal.";
pub const RHO: &str = "ρ of Karras' schedule σ_i = (σ_max^{1/ρ} + u (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ; EDM eq. 5 uses ρ = 7 \
(ρ = 1 is uniform, large ρ crowds steps near σ_min).";
pub const SIGMA_MIN: &str = "σ_min, the last non-zero noise level (EDM: 0.002).";
pub const SIGMA_MAX: &str = "σ_max = σ_0, x_0 = σ_0 z (EDM: 80).";
pub const ADAPTIVE: &str = "San-Roman et al. 2021 (arXiv 2104.02600): after each step estimate σ_hat(x) and re-plan the \
remaining steps from σ_hat down to σ_min with the same family (the next level makes at least half the planned \
progress in ln σ, so an unidentifiable σ_hat cannot stall it).";
pub const ADAPTIVE_STEP: &str = "San-Roman et al. 2021's adaptive step: each step starts from the state's estimated \
noise level σ_hat (the batch's pooled estimate), so the denoiser is conditioned on σ_hat and the step runs from σ_hat \
to the planned next level, correcting a state noisier or cleaner than scheduled. σ_hat is kept within the geometric \
midpoints to the neighbouring levels; the last step (to 0) keeps its level. Shown once adaptive is on; it stays on, \
alone, if adaptive is then turned off.";
pub const CHURN: &str = "γ_i = min(S_churn/N, √2 − 1) for S_tmin ≤ σ_i ≤ S_tmax, else 0; t_hat = σ_i (1 + γ_i), \
x_hat = x_i + √(t_hat² − σ_i²) S_noise ε, then a Heun step from t_hat. Algorithm 2 of EDM, Karras et al. 2022, arXiv 2206.00364. \
Acts in the edm sampler (heun switches to edm, which equals heun at S_churn = 0).";
pub const TMIN: &str = "Churn only where S_tmin ≤ σ_i ≤ S_tmax (EDM Alg. 2; ImageNet-64: 0.05).";
pub const TMAX: &str = "Churn only where S_tmin ≤ σ_i ≤ S_tmax (EDM Alg. 2; ImageNet-64: 50).";
pub const TMAX_INF: &str = "S_tmax = ∞: churn at every σ_i ≥ S_tmin.";
pub const SNOISE: &str = "x_hat = x_i + √(t_hat² − σ_i²) S_noise ε (t_hat = σ_i (1 + γ_i)): S_noise > 1 offsets the denoiser's detail loss \
(EDM Alg. 2; typical 1.000–1.011, ImageNet-64: 1.003). Also scales euler-a's noise.";
pub const ETA: &str = "Euler ancestral: σ_up = min(σ', η √(σ'² (σ² − σ'²)/σ²)), σ_down = √(σ'² − σ_up²); \
Euler to σ_down, add σ_up ε (k-diffusion). η = 0 is Euler.";
pub const CFG: &str = "D_w = D(x; σ, none) + w (D(x; σ, c) − D(x; σ, none)); w = 1 is the plain conditional model, \
w = 0 the unconditional one. Classifier-free guidance, Ho & Salimans 2022 (arXiv 2207.12598).";
pub const CLASS: &str = "c, the class CFG conditions on (labelled data only).";
pub const NAG: &str = "D_w = D(x; σ) + w (D(x; σ) − D(x; none)): guidance toward states whose noise level is \
the scheduled one, w grad_x ln p(σ|x) added to the score. D(x; none) is the noise-unconditional model of the chosen \
NAG form. Noise Awareness Guidance, Zhong et al. 2025 (arXiv 2510.12497); paper defaults w = 3, or 2 with CFG.";
pub const NAG_FORM: &str = "Which noise-unconditional model D(x; none) NAG uses. The default is what a network \
trained with its noise condition dropped converges to (bounded); the exact score is the stiff theoretical limit.";
pub const NAG_FORM_AVERAGE: &str = "As a classifier-free model learns it (exact, for this data): \
D(x; none) = x − σ ε_none(x), ε_none(x) = E[n | x] = Σ_k p(σ_k | x) (x − D(x; σ_k)) / σ_k, the posterior under \
the noise-dropped rows' training prior (ln σ uniform over [0.002, 80]). Bounded: ε_none is a posterior mean of the \
noise, and the guidance vanishes as σ -> 0. On a learned denoiser this exact direction guides the learned D.";
pub const NAG_FORM_SCORE: &str = "Exact score, the stiff theoretical limit: D(x; none) = x + σ² s(x), s(x) the score of \
p(x) = ∫ p(x; σ') π(σ') dσ' (π: NAG π(σ)). It grows like σ²/σ_hat² for states cleaner than scheduled: with 18 \
steps w ≤ 0.5 stays stable, the paper's w = 2–3 diverges.";
pub const NAG_FORM_LEARNED: &str = "Learned, classifier-free: the learned model's own noise-dropped branch \
D(x; none) = x + σ F(c_none(x) x; null), trained on rows whose noise level was dropped (noise dropout). \
Learned denoisers only: the exact denoiser has no such branch.";
pub const NAG_FORM_CLASSIFIER: &str = "Learned, classifier-based: D_w = D(x; σ) + w σ² grad_x ln g(σ | x), with g the loaded \
noise-level estimator (a network predicting the mean and log-variance of ln σ from x; its input gradient by autograd). \
The classifier-based form of Noise Awareness Guidance (Zhong et al. 2025, arXiv 2510.12497, their g_phi).";
pub const NAG_STEP: &str = "How the sampler steps NAG's guided ODE dx/dσ = (x − D_w)/σ. Written as \
D_w = x − k (x − A) + (k − 1) σ E with k = 1 + w, A the conditional denoiser and E = (x − D(x; none))/σ, NAG pulls a \
state toward the scheduled noise level at k times the plain ODE's rate.";
pub const NAG_STEP_EXPONENTIAL: &str = "Exponential (stable, the default): each step solves the stiff part exactly, \
x' = A + σ' E + (σ'/σ)^(1+w) (x − A − σ E) with A and E held (Heun: linear in ln σ between the step's two calls). \
Stable at any step length; it converges to the same ODE as the explicit step as the steps shorten. Not for the \
classifier-based form.";
pub const NAG_STEP_EXPLICIT: &str = "Explicit (the paper's, at 250 steps): the sampler's own step on D_w. An \
off-schedule error is multiplied by 1 − (1 + w) r per step, r = 1 − σ_(i+1)/σ_i: unstable once (1 + w) r > 2, e.g. \
w ≥ 2 at 18 Karras steps, where the samples leave the data.";
pub const NAG_FORM_NEEDS_ESTIMATOR: &str = "Needs a learned noise-level estimator g(σ | x): File -> Open noise-level \
estimator… (or drop its .safetensors on the window), or train one in the Training tab (what to train: noise-level \
estimator) or with `noisescope train --estimator`.";
pub const ESTIMATOR: &str = "The learned noise-level estimator g(σ | x) the runs use: its σ_hat is drawn in the Noise \
level tab beside the exact posterior's, and it drives the classifier-based NAG form and, if chosen, the adaptive \
schedule.";
pub const OPEN_ESTIMATOR: &str = "A noise-level estimator written by `noisescope train --estimator` or the Training tab: \
PATH.safetensors with PATH.json beside it (the .json tells it from a denoiser; dropping either file on the window \
works too). It must read samples of the data's dimension.";
pub const ESTIMATOR_REMOVE: &str = "Stop using the learned noise-level estimator: the Noise level tab shows the exact \
posterior alone, NAG and the adaptive schedule go back to exact forms.";
pub const ADAPTIVE_ESTIMATOR: &str = "Where the adaptive schedule reads σ_hat: the exact posterior p(σ | x) of the data \
(pooled over the diagnostics subset), or the loaded learned estimator g(σ | x) (the median of its σ_hat over the subset), \
as San-Roman et al. 2021 (arXiv 2104.02600) do with their learned noise-level network.";
pub const NAG_PRIOR: &str = "π(σ) of NAG's exact-score form: EDM's training log-normal ln σ ~ N(−1.2, 1.2²), \
or log-uniform over [σ_min, σ_max] (the noise-unconditional model of NAG, Zhong et al. 2025, arXiv 2510.12497).";
pub const SEED: &str = "x_0 = σ_0 z, z ~ N(0, I) drawn from this seed, one stream per sample: a changed setting \
reruns the same noise, so the difference on screen is the setting's effect alone.";
pub const BATCH: &str = "Particles sampled at once.";
pub const BACKEND: &str =
    "Where the denoiser's heavy kernels run: auto (a GPU when there is one), gpu, cpu.";
pub const PRECISION: &str = "Denoiser arithmetic; sampler state updates are always f64.";
pub const DIAGNOSTICS: &str = "Per step: σ_hat(x_i) from the exact posterior p(σ|x) prop. to p(x; σ) π(σ) (log-sum-exp on a \
log grid), δ = ln(σ_hat/σ_i), the turning angle between d_i and d'_i and the local error |h| ||d'_i − d_i||/2 \
(noise level: San-Roman et al. 2021, arXiv 2104.02600; curvature: §3 of EDM, Karras et al. 2022, arXiv 2206.00364).";
pub const SUBSET: &str =
    "Rows of the batch whose σ_hat gives the median and 10–90% band (a fixed random subset).";
pub const PLAY: &str = "Replay the recorded states x_0 … x_N (the run itself takes milliseconds).";
pub const PAUSE: &str = "Hold the shown state.";
pub const STEP: &str = "One state forward.";
pub const FOLLOW: &str = "Show the newest state of each run.";
pub const RERUN: &str = "Run the current settings again (same seed, same noise).";
pub const RERUN_ON_CHANGE: &str =
    "Start a new run whenever a setting changes; the old run stops at its next step.";
pub const RESET: &str =
    "Back to the default scene: 8gaussians, exact denoiser, heun, 18 karras steps, 1000 particles.";
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
pub const TRAIN_DATA: &str = "The Training tab trains on the data chosen in the controls (the rows the exact denoiser \
knows; a closed-form source is sampled once).";
pub const TRAIN_TARGET: &str = "What to train: a denoiser D(x; σ) (sampled by the Denoiser picker), or a noise-level \
estimator g(σ | x), a network predicting the mean and log-variance of ln σ from a noisy x, trained on data rows plus \
σ n with σ log-uniform over its range (the g_phi of Zhong et al. 2025, arXiv 2510.12497; the P_theta of San-Roman et \
al. 2021, arXiv 2104.02600). A finished estimator becomes the app's: its σ_hat is drawn in the Noise level tab and \
NAG's classifier-based form is offered.";
pub const TRAIN_ESTIMATOR_MODEL: &str = "mlp: hidden layers of Linear + SiLU on x / RMS(x) and the log RMS (width and \
depth below). conv (images): three 3x3 convolutions (C, 2C, 2C channels, C below, the last two of stride 2), a global \
average and a dense layer of 128. Both predict a correction to the log RMS, which is ln σ itself once the noise dominates.";
pub const TRAIN_ESTIMATOR_CHANNELS: &str = "Channels C of the conv estimator's first 3x3 convolution (its second and \
third have 2C); the parameters grow as C².";
pub const TRAIN_ESTIMATOR_LOSS: &str = "nll: the Gaussian negative log-likelihood of ln σ under the predicted mean and \
log-variance. alpha: San-Roman et al. 2021's (log(1 − a) − log(1 − a_hat))², a = 1/(1 + σ²), for the mean (accurate \
near a -> 1), with the NLL around it for the log-variance.";
pub const TRAIN_ESTIMATOR_RANGE: &str = "The trained range of σ: each row's σ is drawn log-uniformly over [σ_min, σ_max]. \
Outside it the estimator extrapolates.";
pub const TRAIN_MODEL: &str = "mlp: Fourier features of c_noise = ln(σ)/4, a class embedding, hidden layers of Linear + SiLU, \
for low-dimensional data (and flattened images). unet: convolutions at two or three resolutions, for image data. \
Both are preconditioned as in EDM (Karras et al. 2022, arXiv 2206.00364, Table 1): D = c_skip x + c_out F(c_in x; c_noise).";
pub const TRAIN_MLP_WIDTH: &str = "Units of every hidden layer of the mlp.";
pub const TRAIN_MLP_DEPTH: &str = "Hidden layers (Linear + SiLU) of the mlp.";
pub const TRAIN_UNET_WIDTH: &str = "Channels at the finest resolution of the unet (twice as many below); a multiple of 8, the GroupNorm's groups.";
pub const TRAIN_STEPS: &str =
    "Optimisation steps (AdamW, Loshchilov & Hutter 2019, arXiv 1711.05101).";
pub const TRAIN_BATCH: &str = "Training rows per step, each with its own σ and noise.";
pub const TRAIN_LR: &str =
    "AdamW's learning rate after a linear warm-up (200 steps, at most a quarter of the run).";
pub const TRAIN_EMA: &str = "Half-life of the exponential moving average of the weights, in training samples \
(EDM: 0.5 M images, ramped up to 5% of the samples seen). Previews and the saved model use the EMA weights.";
pub const TRAIN_CLASS_DROPOUT: &str = "Probability that a row trains with the null class: the unconditional model that CFG \
needs (Ho & Salimans 2022, arXiv 2207.12598).";
pub const TRAIN_NOISE_DROPOUT: &str = "Probability that a row trains without its noise level: the noise-unconditional model \
that NAG needs (Zhong et al. 2025, arXiv 2510.12497); those rows draw σ log-uniformly over [0.002, 80].";
pub const TRAIN_SEED: &str = "Seed of the initial weights and of every draw of every step: the same seed gives the same loss curve.";
pub const TRAIN_SIGMA: &str = "Where training noise levels come from. log-normal: ln σ ~ N(P_mean, P_std²) (EDM, Karras et al. \
2022, arXiv 2206.00364, §5). InfoNoise: the log-normal during a warm-up, then π prop. to ρ_hat/λ with ρ = mmse/σ^3 per dσ estimated \
from the training losses and gated at low noise by σ^3/(σ^3 + c^3) (InfoNoise, arXiv 2602.18647).";
pub const TRAIN_P_MEAN: &str =
    "P_mean of ln σ ~ N(P_mean, P_std²) (EDM: −1.2); InfoNoise's warm-up uses it too.";
pub const TRAIN_P_STD: &str =
    "P_std of ln σ ~ N(P_mean, P_std²) (EDM: 1.2); InfoNoise's warm-up uses it too.";
pub const TRAIN_INFO_WARMUP: &str = "Steps on the log-normal before InfoNoise's first density (a public reimplementation \
of InfoNoise, arXiv 2602.18647, uses 2000 for long runs).";
pub const TRAIN_INFO_REBUILD: &str = "Steps between rebuilds of InfoNoise's estimate m_hat(σ) and its density (the reimplementation: 1000).";
pub const TRAIN_INFO_EMA: &str = "Weight of the previous m_hat(σ) at a rebuild: m_hat <- e m_hat + (1 − e) new (the reimplementation: 0.9).";
pub const TRAIN_INFO_GATE: &str = "The low-noise gate σ^3/(σ^3 + c^3): onset p picks c where the normalised ρ first reaches p \
(0.002); pinned c fixes it (0.2 for discrete data). InfoNoise, arXiv 2602.18647.";
pub const TRAIN_PREVIEW_EVERY: &str = "Steps between previews: samples of the EMA weights (Heun, 18 Karras steps), made on the \
trainer thread. 0: only on \"Preview now\".";
pub const TRAIN_START: &str = "Train on the trainer thread; sampling goes on. A finished model is saved to the app's data \
folder and listed below (and in the Denoiser picker).";
pub const TRAIN_PAUSE: &str = "Hold training before its next step.";
pub const TRAIN_RESUME: &str =
    "Go on from the step it paused at (the same draws as an uninterrupted run).";
pub const TRAIN_CANCEL: &str = "Stop before the next step; the model so far can be saved.";
pub const TRAIN_PREVIEW: &str =
    "Sample the current EMA weights at the next report (every 100 steps).";
pub const TRAIN_PROGRESS: &str =
    "Steps done of the run; steps/s over the last seconds and the time left at that rate.";
pub const TRAIN_MODELS: &str = "Learned models trained here or opened since the app started.";
pub const TRAIN_SAVE: &str = "Write the last run's model as PATH.safetensors (a denoiser's EMA and raw weights, or a \
noise-level estimator's weights) and PATH.json (what they mean). A finished run is already in the models folder; a saved \
estimator also becomes the runs' estimator.";
pub const TRAIN_OPEN: &str =
    "Read a checkpoint (PATH.safetensors with PATH.json beside it) and list it.";
pub const TRAIN_LOSS_PLOT: &str = "The EDM-weighted loss λ(σ) ||D(y + σ n; σ) − y||²/dim of every step (Karras et al. 2022, \
arXiv 2206.00364, eq. 2 and Table 1; about 1 at initialisation), and its moving average. A noise-level estimator's run \
shows its own loss on a linear axis: the Gaussian NLL of ln σ (with the alpha loss's fit added), below 0 once it is \
sure.";
pub const TRAIN_PER_SIGMA_PLOT: &str = "The latest report's losses binned by σ: ||D − y||²/dim (the model's mmse per \
dimension) and λ(σ) times it, with λ = (σ² + σ_data²)/(σ σ_data)². Dashed: the same for the exact denoiser, \
the floor no network can go below (the ideal denoiser is the minimiser of the loss); for labelled data it knows the \
class on the rows that keep it, as the network does.";
pub const TRAIN_PREVIEW_PLOT: &str =
    "Samples of the current EMA weights (Heun, 18 Karras steps; classes in turn), over the data.";
pub const TRAIN_PROFILE_PLOT: &str = "mmse(σ)/dim: InfoNoise's running estimate m_hat from the training losses (earlier \
ones fainter; the binned losses for log-normal runs) and the exact denoiser's (closed form for a Gaussian, Monte \
Carlo otherwise). InfoNoise, arXiv 2602.18647.";
pub const TRAIN_ALLOCATION_PLOT: &str = "Where training σ are drawn, per d ln σ: the log-normal, InfoNoise's learned density \
π prop. to ρ_hat gate/λ, and the density InfoNoise would reach with the exact profile (InfoNoise, arXiv 2602.18647).";

pub const ALL: &[&str] = &[
    TRAIN_DATA,
    TRAIN_MODEL,
    TRAIN_TARGET,
    TRAIN_ESTIMATOR_MODEL,
    TRAIN_ESTIMATOR_CHANNELS,
    TRAIN_ESTIMATOR_LOSS,
    TRAIN_ESTIMATOR_RANGE,
    TRAIN_MLP_WIDTH,
    TRAIN_MLP_DEPTH,
    TRAIN_UNET_WIDTH,
    TRAIN_STEPS,
    TRAIN_BATCH,
    TRAIN_LR,
    TRAIN_EMA,
    TRAIN_CLASS_DROPOUT,
    TRAIN_NOISE_DROPOUT,
    TRAIN_SEED,
    TRAIN_SIGMA,
    TRAIN_P_MEAN,
    TRAIN_P_STD,
    TRAIN_INFO_WARMUP,
    TRAIN_INFO_REBUILD,
    TRAIN_INFO_EMA,
    TRAIN_INFO_GATE,
    TRAIN_PREVIEW_EVERY,
    TRAIN_START,
    TRAIN_PAUSE,
    TRAIN_RESUME,
    TRAIN_CANCEL,
    TRAIN_PREVIEW,
    TRAIN_PROGRESS,
    TRAIN_MODELS,
    TRAIN_SAVE,
    TRAIN_OPEN,
    TRAIN_LOSS_PLOT,
    TRAIN_PER_SIGMA_PLOT,
    TRAIN_PREVIEW_PLOT,
    TRAIN_PROFILE_PLOT,
    TRAIN_ALLOCATION_PLOT,
    DATA,
    TWO_DIRACS,
    GAUSSIAN,
    POINTS,
    OPEN_FOLDER,
    OPEN_NPY,
    IMAGE_SIZE,
    DENOISER,
    DENOISER_EXACT,
    OPEN_CHECKPOINT,
    COMPARE_EXACT,
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
    NAG_FORM,
    NAG_FORM_AVERAGE,
    NAG_FORM_SCORE,
    NAG_FORM_LEARNED,
    NAG_FORM_CLASSIFIER,
    NAG_FORM_NEEDS_ESTIMATOR,
    NAG_STEP,
    NAG_STEP_EXPONENTIAL,
    NAG_STEP_EXPLICIT,
    ESTIMATOR,
    ESTIMATOR_REMOVE,
    OPEN_ESTIMATOR,
    ADAPTIVE_ESTIMATOR,
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

#[cfg(test)]
mod tests {
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
            include_str!("settings.rs"),
            include_str!("panels.rs"),
            include_str!("menu.rs"),
            include_str!("dialogs.rs"),
            include_str!("tips.rs"),
            include_str!("controls/mod.rs"),
            include_str!("controls/data.rs"),
            include_str!("controls/sampling.rs"),
            include_str!("controls/run_view.rs"),
            include_str!("logic.rs"),
            include_str!("bench_script.rs"),
            include_str!("states_view.rs"),
            include_str!("sigma_plot.rs"),
            include_str!("curvature_plot.rs"),
            include_str!("schedule_plot.rs"),
            include_str!("theory.rs"),
            include_str!("exports.rs"),
            include_str!("ab.rs"),
            include_str!("banner.rs"),
            include_str!("presenter.rs"),
            include_str!("scenes.rs"),
            include_str!("welcome.rs"),
            include_str!("plot_style.rs"),
            include_str!("training_tab.rs"),
            include_str!("training_plots.rs"),
            include_str!("lessons/mod.rs"),
            include_str!("lessons/builtin/mod.rs"),
            include_str!("lessons/builtin/sampling.rs"),
            include_str!("lessons/builtin/noise.rs"),
            include_str!("lessons/builtin/learned.rs"),
            include_str!("controls/denoiser.rs"),
            include_str!("compare.rs"),
            include_str!("lessons/panel.rs"),
            include_str!("controls/access.rs"),
            include_str!("../run/divergence.rs"),
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

    /// What the app shows cites papers by name and arXiv number, never the project's own notes
    /// ("science.md", "seed 004"): every string literal of the app's sources is checked.
    #[test]
    fn shown_text_cites_papers_not_internal_notes() {
        let sources = [
            ("tips.rs", include_str!("tips.rs")),
            ("menu.rs", include_str!("menu.rs")),
            ("panels.rs", include_str!("panels.rs")),
            ("controls/data.rs", include_str!("controls/data.rs")),
            ("controls/sampling.rs", include_str!("controls/sampling.rs")),
            ("controls/run_view.rs", include_str!("controls/run_view.rs")),
            ("states_view.rs", include_str!("states_view.rs")),
            ("sigma_plot.rs", include_str!("sigma_plot.rs")),
            ("curvature_plot.rs", include_str!("curvature_plot.rs")),
            ("schedule_plot.rs", include_str!("schedule_plot.rs")),
            ("theory.rs", include_str!("theory.rs")),
            ("ab.rs", include_str!("ab.rs")),
            ("banner.rs", include_str!("banner.rs")),
            ("presenter.rs", include_str!("presenter.rs")),
            ("welcome.rs", include_str!("welcome.rs")),
            (
                "lessons/builtin/mod.rs",
                include_str!("lessons/builtin/mod.rs"),
            ),
            (
                "lessons/builtin/sampling.rs",
                include_str!("lessons/builtin/sampling.rs"),
            ),
            (
                "lessons/builtin/noise.rs",
                include_str!("lessons/builtin/noise.rs"),
            ),
            ("lessons/panel.rs", include_str!("lessons/panel.rs")),
            ("training_tab.rs", include_str!("training_tab.rs")),
            ("training_plots.rs", include_str!("training_plots.rs")),
            ("../run/divergence.rs", include_str!("../run/divergence.rs")),
        ];
        for (name, source) in sources {
            // Comments and tests may name the notes; the code (and so every string) may not.
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                let lower = line.to_lowercase();
                for word in ["science.md", "seed 00"] {
                    assert!(
                        !lower.contains(word),
                        "{name}:{}: '{word}' in shown text",
                        n + 1
                    );
                }
            }
        }
        for tip in super::ALL {
            assert!(!tip.contains("science.md") && !tip.to_lowercase().contains("seed 00"));
        }
    }
}
