//! Presets and saved settings written before `RunSpec` had a `denoiser` field still load, as the
//! same runs with the exact denoiser; the new field's spellings round-trip, and a denoiser this
//! build cannot make is an error, never silently replaced by another.
//!
//! The fixtures in tests/fixtures/presets/ are what `RunSpec::to_json` (Export -> Save preset) and
//! `app::Settings::to_json` (the app's saved settings) wrote for the specs built below.

use noisescope::app::Settings;
use noisescope::backend::BackendChoice;
use noisescope::core::Precision;
use noisescope::core::estimate::SigmaPrior;
use noisescope::core::guidance::{NagForm, NagStep};
use noisescope::core::sampler::SamplerKind;
use noisescope::core::schedule::{ScheduleKind, ScheduleSpec};
use noisescope::data::DataSpec;
use noisescope::run::spec::{ClassSpec, DenoiserSpec, GuidanceSpec};
use noisescope::run::{ModelHandle, RunSpec};

const PRESET_DEFAULT: &str = include_str!("fixtures/presets/app-preset-default-scene.json");
const PRESET_GAUSSIAN: &str = include_str!("fixtures/presets/app-preset-gaussian-tangent.json");
const SETTINGS_DEFAULT: &str = include_str!("fixtures/presets/app-settings-default-scene.json");
const SETTINGS_DIGITS: &str = include_str!("fixtures/presets/app-settings-digits-cfg.json");

fn gaussian_tangent_spec() -> RunSpec {
    RunSpec {
        data: DataSpec::Gaussian {
            spectrum: vec![0.01, 0.1, 1.0, 4.0],
        },
        sampler: SamplerKind::EulerAncestral,
        schedule: ScheduleSpec {
            kind: ScheduleKind::Tangent { c: Some(0.5) },
            steps: 12,
            ..Default::default()
        },
        adaptive: true,
        guidance: GuidanceSpec {
            cfg: 1.0,
            class: None,
            nag: 0.5,
            // Presets written before the field load with the default form.
            nag_form: NagForm::PosteriorAverage,
            // ... and the default step.
            nag_step: NagStep::Exponential,
            nag_prior: SigmaPrior::LogUniform {
                lo: 0.002,
                hi: 80.0,
            },
            nag_estimator: None,
        },
        batch: 64,
        seed: 7,
        precision: Precision::F64,
        backend: BackendChoice::Cpu,
        ..Default::default()
    }
}

fn digits_cfg_spec() -> RunSpec {
    RunSpec {
        data: DataSpec::Digits,
        sampler: SamplerKind::DpmPp2m,
        schedule: ScheduleSpec {
            kind: ScheduleKind::LogUniform,
            ..Default::default()
        },
        guidance: GuidanceSpec {
            cfg: 2.0,
            class: Some(ClassSpec::All(3)),
            ..Default::default()
        },
        backend: BackendChoice::Gpu,
        ..Default::default()
    }
}

#[test]
fn presets_without_a_denoiser_field_load_as_the_same_exact_runs() {
    for fixture in [
        PRESET_DEFAULT,
        PRESET_GAUSSIAN,
        SETTINGS_DEFAULT,
        SETTINGS_DIGITS,
    ] {
        assert!(
            !fixture.contains("denoiser"),
            "the fixtures predate the field"
        );
    }
    let default_scene = Settings::default_scene();
    let preset = RunSpec::from_json(PRESET_DEFAULT).expect("default-scene preset");
    assert_eq!(preset, default_scene.spec);
    assert_eq!(preset.denoiser, DenoiserSpec::Exact);
    let preset = RunSpec::from_json(PRESET_GAUSSIAN).expect("gaussian preset");
    assert_eq!(preset, gaussian_tangent_spec());
    assert_eq!(preset.denoiser, DenoiserSpec::Exact);

    let settings = Settings::from_json(SETTINGS_DEFAULT).expect("default-scene settings");
    assert_eq!(settings, default_scene);
    let settings = Settings::from_json(SETTINGS_DIGITS).expect("digits settings");
    assert_eq!(settings.spec, digits_cfg_spec());
    assert_eq!(settings.view, default_scene.view);
}

#[test]
fn the_denoiser_field_round_trips_in_its_documented_spellings() {
    let cases = [
        (DenoiserSpec::Exact, r#""exact""#),
        (
            DenoiserSpec::Checkpoint("runs/moons.safetensors".into()),
            r#"{"checkpoint":"runs/moons.safetensors"}"#,
        ),
        (
            DenoiserSpec::Bundled("moons".into()),
            r#"{"bundled":"moons"}"#,
        ),
    ];
    for (spec, json) in cases {
        assert_eq!(serde_json::to_string(&spec).expect("serialise"), json);
        let preset = RunSpec::from_json(&format!(r#"{{"denoiser": {json}}}"#)).expect(json);
        assert_eq!(preset.denoiser, spec);
        assert_eq!(
            RunSpec::from_json(&preset.to_json()).expect("round trip"),
            preset
        );
    }
    assert!(RunSpec::from_json(r#"{"denoiser": "learned"}"#).is_err());
}

#[test]
fn a_denoiser_that_cannot_be_made_is_an_error_not_the_exact_one() {
    let moons = DataSpec::Toy {
        name: "moons".into(),
        points: 64,
    };
    for (denoiser, needle) in [
        (
            DenoiserSpec::Checkpoint("runs/moons.safetensors".into()),
            "runs/moons.safetensors",
        ),
        (
            DenoiserSpec::Bundled("cifar".into()),
            "no bundled model 'cifar'",
        ),
    ] {
        let spec = RunSpec {
            data: moons.clone(),
            denoiser,
            backend: BackendChoice::Cpu,
            ..Default::default()
        };
        let message = match ModelHandle::load(&spec, &mut Vec::new()) {
            Ok(_) => panic!("{:?} was built", spec.denoiser),
            Err(e) => e.to_string(),
        };
        assert!(message.contains(needle), "{message}");
    }
    // A bundled model that exists is the run's denoiser, with the exact model as ground truth.
    let spec = RunSpec {
        data: moons,
        denoiser: DenoiserSpec::Bundled("moons".into()),
        backend: BackendChoice::Cpu,
        ..Default::default()
    };
    let handle = ModelHandle::load(&spec, &mut Vec::new()).expect("bundled moons");
    assert!(handle.ground_truth.is_some());
    assert!(handle.backend.starts_with("candle"), "{}", handle.backend);
}

/// Checks that `T` prints, parses and serialises exactly `names`, in order, and nothing else.
fn assert_spelled<T>(names: &[&str])
where
    T: clap::ValueEnum
        + std::fmt::Display
        + std::str::FromStr
        + serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug,
{
    let values = T::value_variants();
    assert_eq!(values.len(), names.len());
    for (value, name) in values.iter().zip(names) {
        assert_eq!(value.to_string(), *name);
        assert!(name.parse::<T>().is_ok_and(|v| v == *value), "{name}");
        let json = serde_json::to_string(value).expect("serialise");
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<T>(&json).expect("parse"), *value);
    }
    assert!("nope".parse::<T>().is_err());
    assert!(serde_json::from_str::<T>("\"nope\"").is_err());
    // Case matters, as it did.
    assert!(names[0].to_uppercase().parse::<T>().is_err());
}

#[test]
fn enum_names_are_the_ones_flags_and_presets_always_used() {
    assert_spelled::<SamplerKind>(&["euler", "heun", "edm", "euler-a", "dpmpp-2m"]);
    assert_spelled::<Precision>(&["f32", "f64"]);
    assert_spelled::<BackendChoice>(&["auto", "gpu", "cpu"]);
    for (name, kind) in [
        ("karras", ScheduleKind::Karras),
        ("log", ScheduleKind::LogUniform),
        ("log-uniform", ScheduleKind::LogUniform),
        ("uniform", ScheduleKind::Uniform),
        ("vp", ScheduleKind::Vp),
        ("tangent", ScheduleKind::Tangent { c: None }),
        ("tangent:0.25", ScheduleKind::Tangent { c: Some(0.25) }),
    ] {
        assert_eq!(name.parse::<ScheduleKind>().ok(), Some(kind), "{name}");
    }
    for kind in ScheduleKind::FAMILIES {
        assert_eq!(kind.name().parse::<ScheduleKind>().ok(), Some(kind));
    }
}
