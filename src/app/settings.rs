//! What the app remembers between launches (`Settings`: the run's spec and the view options, JSON
//! in eframe's storage) and the rules by which one setting moves another (S_churn switches heun to
//! edm, CFG picks a class, new data drops the class), kept here so they are tested without a UI.

use serde::{Deserialize, Serialize};

use super::ab::AbView;
use super::training_tab::TrainingSettings;
use std::path::PathBuf;

use crate::core::guidance::NagForm;
use crate::core::sampler::SamplerKind;
use crate::data::DataSpec;
use crate::error::{Error, Result};
use crate::run::RunSpec;
use crate::run::spec::{AdaptiveEstimator, ClassSpec, DiagnosticsSpec};

/// Rows of the default scene's noise-level statistics (see `Settings::default_scene`).
pub const DEFAULT_SCENE_SUBSET: usize = 32;

/// The views of the central area.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tab {
    /// States beside the noise-level and curvature plots.
    #[default]
    Overview,
    States,
    NoiseLevel,
    Curvature,
    Schedule,
    Theory,
    /// Train a learned denoiser (training_tab.rs).
    Training,
    /// Sweeps: a metric against NFE per setting (sweep_tab.rs).
    Sweep,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Overview,
        Tab::States,
        Tab::NoiseLevel,
        Tab::Curvature,
        Tab::Schedule,
        Tab::Theory,
        Tab::Training,
        Tab::Sweep,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::States => "States",
            Tab::NoiseLevel => "Noise level",
            Tab::Curvature => "Curvature",
            Tab::Schedule => "Schedule",
            Tab::Theory => "Theory",
            Tab::Training => "Training",
            Tab::Sweep => "Sweep",
        }
    }
}

/// How the views draw; persisted with the run settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewOptions {
    pub tab: Tab,
    /// A changed setting starts a new run at once.
    pub rerun_on_change: bool,
    pub show_data: bool,
    pub show_paths: bool,
    /// Particles whose paths (2-D) or trajectories (1-D) are drawn.
    pub paths: usize,
    pub show_denoised: bool,
    /// Each particle's Euler step toward D(x_i): the ODE direction at the particle.
    pub show_arrows: bool,
    /// Overlay the pinned baseline and show its states beside the live ones.
    pub show_baseline: bool,
    /// Replay speed, states per second.
    pub play_speed: f64,
    /// How the baseline's states sit against the live ones.
    pub ab: AbView,
    /// In flip mode: the baseline is the one shown.
    pub ab_flipped: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            tab: Tab::Overview,
            rerun_on_change: true,
            show_data: true,
            show_paths: true,
            paths: 50,
            show_denoised: true,
            show_arrows: false,
            show_baseline: true,
            play_speed: 6.0,
            ab: AbView::SideBySide,
            ab_flipped: false,
        }
    }
}

/// Everything the app remembers between launches (eframe storage, JSON under `eframe::APP_KEY`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub spec: RunSpec,
    pub view: ViewOptions,
    /// The Training tab's settings.
    pub training: TrainingSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::default_scene()
    }
}

/// Why a setting moved another one, shown once under the controls.
pub const CHURN_SWITCHES_TO_EDM: &str =
    "S_churn acts in EDM's stochastic sampler: heun -> edm (identical at S_churn = 0).";
pub const CFG_PICKS_CLASS_0: &str = "CFG conditions on a class: class 0 selected.";

impl Settings {
    /// The scene a newcomer sees: 2-D 8 Gaussians with its exact mixture denoiser, Heun,
    /// 18 Karras steps, 1000 particles, seed 0 (motion within the first second). Its noise-level
    /// statistics use 32 rows rather than the CLI's 128: at 128 the diagnostics alone took
    /// 35-75 ms of a rerun on the 2-core reference machine, against a 100 ms budget.
    pub fn default_scene() -> Self {
        Settings {
            spec: RunSpec {
                data: DataSpec::Toy {
                    name: "8gaussians".into(),
                    points: 4096,
                },
                sampler: SamplerKind::Heun,
                batch: 1000,
                seed: 0,
                diagnostics: DiagnosticsSpec {
                    enabled: true,
                    subset: DEFAULT_SCENE_SUBSET,
                },
                ..RunSpec::default()
            },
            view: ViewOptions::default(),
            training: TrainingSettings::default(),
        }
    }

    /// The settings saved by the last session (eframe storage), or the default scene when there
    /// are none or they are not valid.
    pub fn from_storage(storage: Option<&dyn eframe::Storage>) -> Self {
        let saved = storage.and_then(|s| s.get_string(eframe::APP_KEY));
        match saved.as_deref().map(Settings::from_json) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                eprintln!("note: ignoring saved settings ({e}); opening the default scene");
                Settings::default_scene()
            }
            None => Settings::default_scene(),
        }
    }

    pub fn save_to(&self, storage: &mut dyn eframe::Storage) {
        storage.set_string(eframe::APP_KEY, self.to_json());
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads settings saved by `to_json`; the spec must be valid.
    pub fn from_json(text: &str) -> Result<Self> {
        let settings: Settings = serde_json::from_str(text)
            .map_err(|e| Error::InvalidSpec(format!("saved settings: {e}")))?;
        settings.spec.validate()?;
        Ok(settings)
    }

    /// Sets S_churn. Churn acts in EDM Alg. 2, which at S_churn = 0 is Alg. 1 (heun), so a
    /// positive S_churn switches heun to edm: that only adds the churn. Returns the note saying so.
    pub fn set_churn(&mut self, churn: f64) -> Option<&'static str> {
        self.spec.stochasticity.churn = churn;
        (churn > 0.0 && self.spec.sampler == SamplerKind::Heun).then(|| {
            self.spec.sampler = SamplerKind::Edm;
            CHURN_SWITCHES_TO_EDM
        })
    }

    /// Sets S_tmin and S_tmax, S_tmin lowered to S_tmax where it is above (every spec the
    /// sliders make is valid).
    pub fn set_churn_band(&mut self, tmin: f64, tmax: f64) {
        let st = &mut self.spec.stochasticity;
        st.tmax = tmax;
        st.tmin = tmin.min(tmax);
    }

    /// Sets the CFG weight w. Guidance acts on a class condition and passes through without one,
    /// so a weight off 1 with no class picks class 0. Returns the note saying so.
    pub fn set_cfg(&mut self, w: f64) -> Option<&'static str> {
        let g = &mut self.spec.guidance;
        g.cfg = w;
        (w != 1.0 && g.class.is_none()).then(|| {
            g.class = Some(ClassSpec::All(0));
            CFG_PICKS_CLASS_0
        })
    }

    /// Uses the learned noise-level estimator checkpoint `path` for the runs, or none: without
    /// one, the settings that need it go back to their exact counterparts.
    pub fn set_estimator(&mut self, path: Option<PathBuf>) {
        match path {
            Some(path) => self.spec.estimator = Some(path),
            None => drop_estimator(&mut self.spec),
        }
    }

    /// Switches the data source, keeping the batch quick for heavy data (the ideal denoiser is
    /// O(B N D)); CFG's class is dropped unless the source is the same kind, because class
    /// indices belong to a data set.
    pub fn set_data(&mut self, data: DataSpec) {
        self.spec.batch = match data {
            DataSpec::Images { .. } => self.spec.batch.min(64),
            DataSpec::Digits | DataSpec::BinaryDigits | DataSpec::Npy { .. } => {
                self.spec.batch.min(256)
            }
            _ => self.spec.batch,
        };
        if !same_kind(&self.spec.data, &data) {
            self.spec.guidance.class = None;
        }
        self.spec.data = data;
    }
}

/// Removes `spec`'s learned noise-level estimator, and with it the classifier-based NAG form
/// and the learned adaptive estimator, which need one.
pub fn drop_estimator(spec: &mut RunSpec) {
    spec.estimator = None;
    spec.adaptive_estimator = AdaptiveEstimator::Exact;
    let g = &mut spec.guidance;
    g.nag_estimator = None;
    if g.nag_form == NagForm::ClassifierBased {
        g.nag_form = NagForm::default();
    }
}

/// Whether two data specs are the same kind of source (a toy of the same name, any Gaussian).
pub fn same_kind(a: &DataSpec, b: &DataSpec) -> bool {
    match (a, b) {
        (DataSpec::Toy { name: x, .. }, DataSpec::Toy { name: y, .. }) => x == y,
        (DataSpec::Gaussian { .. }, DataSpec::Gaussian { .. }) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::NoiseScopeApp;
    use eframe::{App as _, Storage as _};
    use std::collections::HashMap;

    /// eframe storage in memory.
    #[derive(Default)]
    struct MemoryStorage(HashMap<String, String>);

    impl eframe::Storage for MemoryStorage {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn settings_persist_through_eframe_storage_and_bad_ones_fall_back() {
        let mut app = NoiseScopeApp::new(Settings::default_scene());
        app.settings.spec.stochasticity.churn = 12.0;
        app.settings.spec.seed = 5;
        app.settings.view.tab = Tab::Curvature;
        let mut storage = MemoryStorage::default();
        app.save(&mut storage);
        let reopened = NoiseScopeApp::from_storage(Some(&storage));
        assert_eq!(reopened.settings, app.settings);
        storage.set_string(eframe::APP_KEY, "{\"spec\": {\"batch\": 0}}".into());
        let fallback = NoiseScopeApp::from_storage(Some(&storage));
        assert_eq!(fallback.settings, Settings::default_scene());
        assert_eq!(
            NoiseScopeApp::from_storage(None).settings,
            Settings::default_scene()
        );
    }

    #[test]
    fn settings_round_trip_as_json_and_bad_ones_are_refused() -> Result<()> {
        let mut s = Settings::default_scene();
        s.view.tab = Tab::Theory;
        s.spec.stochasticity.churn = 7.0;
        assert_eq!(Settings::from_json(&s.to_json())?, s);
        // f64::MAX (S_tmax = infinity) survives.
        assert_eq!(
            Settings::from_json(&s.to_json())?.spec.stochasticity.tmax,
            f64::MAX
        );
        assert!(Settings::from_json("{\"spec\": {\"batch\": 0}}").is_err());
        assert!(Settings::from_json("nope").is_err());
        let d = Settings::default_scene();
        assert_eq!(
            (d.spec.batch, d.spec.schedule.steps, d.spec.sampler),
            (1000, 18, SamplerKind::Heun)
        );
        Ok(())
    }

    #[test]
    fn churn_switches_heun_to_edm_and_leaves_other_samplers_alone() {
        let mut s = Settings::default_scene();
        assert_eq!(s.set_churn(0.0), None, "no churn, no switch");
        assert_eq!(s.spec.sampler, SamplerKind::Heun);
        assert_eq!(s.set_churn(20.0), Some(CHURN_SWITCHES_TO_EDM));
        assert_eq!(
            (s.spec.sampler, s.spec.stochasticity.churn),
            (SamplerKind::Edm, 20.0)
        );
        // Back to 0 keeps edm (equal to heun there); no second note.
        assert_eq!(s.set_churn(0.0), None);
        assert_eq!(s.spec.sampler, SamplerKind::Edm);
        // Samplers without churn keep their kind (the controls say churn has no effect there).
        for kind in [SamplerKind::Euler, SamplerKind::EulerAncestral] {
            s.spec.sampler = kind;
            assert_eq!(s.set_churn(40.0), None);
            assert_eq!(s.spec.sampler, kind);
        }
    }

    #[test]
    fn cfg_off_one_picks_class_0_only_when_no_class_is_set() {
        let mut s = Settings::default_scene();
        assert_eq!(s.set_cfg(1.0), None, "w = 1 is the plain conditional model");
        assert_eq!(s.spec.guidance.class, None);
        assert_eq!(s.set_cfg(3.0), Some(CFG_PICKS_CLASS_0));
        assert_eq!(s.spec.guidance.class, Some(ClassSpec::All(0)));
        assert_eq!(s.spec.guidance.cfg, 3.0);
        s.spec.guidance.class = Some(ClassSpec::All(5));
        assert_eq!(s.set_cfg(0.0), None, "a chosen class is kept");
        assert_eq!(s.spec.guidance.class, Some(ClassSpec::All(5)));
    }

    #[test]
    fn the_churn_band_stays_ordered() {
        let mut s = Settings::default_scene();
        s.set_churn_band(5.0, 2.0);
        let st = &s.spec.stochasticity;
        assert_eq!((st.tmin, st.tmax), (2.0, 2.0));
        s.set_churn_band(0.05, f64::MAX);
        let st = &s.spec.stochasticity;
        assert_eq!((st.tmin, st.tmax), (0.05, f64::MAX));
        assert!(s.spec.validate().is_ok());
    }

    #[test]
    fn heavy_data_gets_a_quick_batch_and_loses_its_class() {
        let mut s = Settings::default_scene();
        s.spec.guidance.class = Some(ClassSpec::All(3));
        s.set_data(DataSpec::Images {
            dir: "x".into(),
            size: 32,
            rgb: false,
        });
        assert_eq!(s.spec.batch, 64);
        assert_eq!(s.spec.guidance.class, None);
        // The same kind of source keeps the class (a toy's point count changed).
        let mut s = Settings::default_scene();
        s.spec.guidance.class = Some(ClassSpec::All(3));
        s.set_data(DataSpec::Toy {
            name: "8gaussians".into(),
            points: 1000,
        });
        assert_eq!(s.spec.guidance.class, Some(ClassSpec::All(3)));
        assert_eq!(s.spec.batch, 1000);
        s.set_data(DataSpec::Digits);
        assert_eq!((s.spec.batch, s.spec.guidance.class.clone()), (256, None));
    }
}
