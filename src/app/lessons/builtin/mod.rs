//! The built-in lessons, each a scene and 2-4 stages, written for a class seeing diffusion
//! sampling for the first time. Every stage is a typed edit of the stage before; the file form
//! (a merge patch per stage) is computed from it, so a built-in lesson saves and reloads as any
//! lesson file does.

mod learned;
mod noise;
mod sampling;

use serde_json::Value;

use super::{ControlRules, FORMAT, Lesson, Stage, VERSION, diff_patch};
use crate::app::controls::Control;
use crate::app::settings::{Settings, Tab};
use crate::data::DataSpec;
use learned::exact_vs_learned;
use noise::{cfg_on_digits, churn, nag, noise_shift, tangent_law};
use sampling::{euler_vs_heun, schedules, what_a_sampler_does, where_trajectories_bend};

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
        exact_vs_learned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sampler::SamplerKind;

    #[test]
    fn every_built_in_lesson_is_valid_with_two_to_four_stages() -> crate::error::Result<()> {
        let lessons = lessons();
        assert_eq!(lessons.len(), 10);
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
        assert_eq!(
            nag.stage_settings(2)?.spec.guidance.nag_step,
            crate::core::guidance::NagStep::Explicit
        );
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
