//! Lessons: guided scenes for a class. A lesson is a starting scene (settings) and 1-8 stages;
//! each stage has its text (a few paragraphs, the key formula, what to look at, what to try),
//! the tab it shows, which controls are open, locked or hidden, and a change to the scene (a
//! JSON merge patch, RFC 7386, on the settings of the stage before), so a stage can say "now
//! NAG w = 3" and the next one can pin the run before it as the A/B baseline. The built-in
//! lessons are in builtin.rs; panel.rs draws the lesson, the Lessons menu and "Save as lesson".
//! Lesson files are the same JSON (`Lesson::to_json` / `Lesson::from_json`).

pub mod builtin;
mod panel;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::NoiseScopeApp;
use super::controls::{Access, AccessTable, Control};
use super::settings::{Settings, Tab};
use crate::error::{Error, Result};

pub use panel::LessonDraft;

/// The format marker and version of lesson files.
pub const FORMAT: &str = "noisescope-lesson";
pub const VERSION: u32 = 1;
/// The most stages a lesson may have.
pub const MAX_STAGES: usize = 8;

/// Which controls a stage leaves open, locks or hides. Controls that edit the run follow
/// `default` unless listed; the replay, rerun and view controls stay open and "reset to default
/// scene" stays hidden unless listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlRules {
    pub default: Access,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<Control>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<Control>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<Control>,
}

impl Default for ControlRules {
    /// Everything that edits the run locked.
    fn default() -> Self {
        ControlRules {
            default: Access::Locked,
            open: Vec::new(),
            locked: Vec::new(),
            hidden: Vec::new(),
        }
    }
}

impl ControlRules {
    /// Every run control locked except `open`.
    pub fn open(open: &[Control]) -> Self {
        ControlRules {
            open: open.to_vec(),
            ..Default::default()
        }
    }

    /// The access of every control under these rules.
    pub fn table(&self) -> AccessTable {
        let mut table = AccessTable::default();
        for c in Control::ALL {
            let base = match c {
                Control::Reset => Access::Hidden,
                c if c.edits_spec() => self.default,
                _ => Access::Open,
            };
            table.set(c, base);
        }
        for (list, access) in [
            (&self.open, Access::Open),
            (&self.locked, Access::Locked),
            (&self.hidden, Access::Hidden),
        ] {
            for c in list {
                table.set(*c, access);
            }
        }
        table
    }

    /// The rules that give `table` (the shortest lists: the default is the commonest access
    /// among run controls).
    pub fn from_table(table: &AccessTable) -> Self {
        let count = |a: Access| {
            Control::ALL
                .iter()
                .filter(|c| c.edits_spec() && table.of(**c) == a)
                .count()
        };
        let default = [Access::Locked, Access::Open, Access::Hidden]
            .into_iter()
            .max_by_key(|a| count(*a))
            .unwrap_or(Access::Locked);
        let mut rules = ControlRules {
            default,
            ..Default::default()
        };
        let plain = rules.table();
        for c in Control::ALL {
            if table.of(c) != plain.of(c) {
                match table.of(c) {
                    Access::Open => rules.open.push(c),
                    Access::Locked => rules.locked.push(c),
                    Access::Hidden => rules.hidden.push(c),
                }
            }
        }
        rules
    }
}

/// One stage of a lesson.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub title: String,
    /// Paragraphs separated by blank lines.
    pub text: String,
    /// The key formula, shown on its own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub formula: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub look_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub try_this: String,
    /// The view the stage opens on.
    pub tab: Tab,
    /// A JSON merge patch on the settings of the stage before (on the lesson's scene for the
    /// first stage): {"spec": {"guidance": {"nag": 3}}}.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub change: Value,
    #[serde(default)]
    pub controls: ControlRules,
    /// On entering, keep the run shown (the stage before's) as the A/B baseline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin_baseline: bool,
}

/// A lesson: a scene and its stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// Always "noisescope-lesson": tells a lesson file from a preset.
    pub format: String,
    pub version: u32,
    pub title: String,
    /// One sentence for the Lessons menu.
    pub summary: String,
    /// Where the first stage starts from.
    pub scene: Settings,
    pub stages: Vec<Stage>,
}

/// Applies a JSON merge patch (RFC 7386) to `target`: objects merge key by key, `null` removes
/// a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, change) in changes {
            if change.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

/// The merge patch that turns `from` into `to` (`Value::Null` when they are equal).
pub fn diff_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = serde_json::Map::new();
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in b {
                match a.get(key) {
                    Some(old) if old == value => {}
                    Some(old) => {
                        patch.insert(key.clone(), diff_patch(old, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            if patch.is_empty() {
                Value::Null
            } else {
                Value::Object(patch)
            }
        }
        _ if from == to => Value::Null,
        _ => to.clone(),
    }
}

fn to_value(settings: &Settings) -> Value {
    serde_json::to_value(settings).unwrap_or(Value::Null)
}

impl Lesson {
    /// The settings stage `k` opens with: the scene, every change up to k, k's tab.
    pub fn stage_settings(&self, k: usize) -> Result<Settings> {
        let mut value = to_value(&self.scene);
        for stage in self.stages.iter().take(k + 1) {
            // No change is written as no patch (null), not as a patch that empties the scene.
            if !stage.change.is_null() {
                merge_patch(&mut value, &stage.change);
            }
        }
        let mut settings: Settings = serde_json::from_value(value).map_err(|e| {
            Error::InvalidSpec(format!("lesson '{}', stage {}: {e}", self.title, k + 1))
        })?;
        settings.spec.validate().map_err(|e| {
            Error::InvalidSpec(format!("lesson '{}', stage {}: {e}", self.title, k + 1))
        })?;
        if let Some(stage) = self.stages.get(k) {
            settings.view.tab = stage.tab;
        }
        Ok(settings)
    }

    /// Checks the lesson can be shown: a title, 1..=MAX_STAGES stages, every stage's settings
    /// valid.
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(Error::InvalidSpec(format!(
                "not a lesson of this version (format \"{FORMAT}\", version {VERSION})"
            )));
        }
        if self.title.trim().is_empty() {
            return Err(Error::InvalidSpec("a lesson needs a title".into()));
        }
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            return Err(Error::InvalidSpec(format!(
                "lesson '{}' has {} stages; give 1 to {MAX_STAGES}",
                self.title,
                self.stages.len()
            )));
        }
        for k in 0..self.stages.len() {
            self.stage_settings(k)?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads and validates a lesson file's text.
    pub fn from_json(text: &str) -> Result<Self> {
        let lesson: Lesson =
            serde_json::from_str(text).map_err(|e| Error::InvalidSpec(format!("lesson: {e}")))?;
        lesson.validate()?;
        Ok(lesson)
    }

    /// Whether a JSON text is a lesson (rather than a preset).
    pub fn looks_like_lesson(text: &str) -> bool {
        serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("format").cloned())
            .is_some_and(|f| f == FORMAT)
    }
}

/// The lesson being shown.
pub struct ActiveLesson {
    pub lesson: Lesson,
    pub stage: usize,
    /// The settings the stage opened with: held controls are kept at these values.
    pub reference: Settings,
    pub access: AccessTable,
}

impl ActiveLesson {
    pub fn current(&self) -> Option<&Stage> {
        self.lesson.stages.get(self.stage)
    }

    pub fn is_last(&self) -> bool {
        self.stage + 1 >= self.lesson.stages.len()
    }
}

impl NoiseScopeApp {
    /// Opens `lesson` at its first stage; a lesson that does not validate is an error in the
    /// status bar and changes nothing.
    pub fn open_lesson(&mut self, lesson: Lesson) {
        if let Err(e) = lesson.validate() {
            return self.report_error(e.to_string());
        }
        self.lesson = Some(ActiveLesson {
            reference: lesson.scene.clone(),
            lesson,
            stage: 0,
            access: AccessTable::default(),
        });
        self.store.baseline = None;
        self.go_to_stage(0);
    }

    /// Opens stage `k` of the active lesson: pins the shown run first when the stage asks,
    /// then sets its scene, tab and locks.
    pub fn go_to_stage(&mut self, k: usize) {
        let Some(active) = self.lesson.as_ref() else {
            return;
        };
        let Some(stage) = active.lesson.stages.get(k) else {
            return;
        };
        let settings = match active.lesson.stage_settings(k) {
            Ok(s) => s,
            Err(e) => return self.report_error(e.to_string()),
        };
        let (pin, access) = (stage.pin_baseline, stage.controls.table());
        if pin {
            self.pin_baseline();
        }
        self.settings = settings.clone();
        self.controls = Default::default();
        self.replay.follow_live();
        if let Some(active) = self.lesson.as_mut() {
            active.stage = k;
            active.reference = settings;
            active.access = access;
        }
    }

    pub fn next_stage(&mut self) {
        if let Some(active) = &self.lesson
            && !active.is_last()
        {
            let next = active.stage + 1;
            self.go_to_stage(next);
        }
    }

    pub fn previous_stage(&mut self) {
        if let Some(active) = &self.lesson
            && active.stage > 0
        {
            let before = active.stage - 1;
            self.go_to_stage(before);
        }
    }

    /// Leaves the lesson; the scene stays, every control opens.
    pub fn leave_lesson(&mut self) {
        self.lesson = None;
    }

    /// The lesson being shown, if any.
    pub fn active_lesson(&self) -> Option<&ActiveLesson> {
        self.lesson.as_ref()
    }

    /// Which controls are open, locked or hidden now.
    pub(super) fn control_access(&self) -> AccessTable {
        self.lesson
            .as_ref()
            .map_or_else(AccessTable::default, |a| a.access)
    }

    /// Puts every locked or hidden control back to the stage's value: a lock holds whatever
    /// the input (a disabled widget, a keyboard or accessibility request, a setting rule).
    pub(super) fn hold_locked_controls(&mut self) {
        if let Some(active) = &self.lesson {
            for control in active.access.held() {
                control.restore(&active.reference, &mut self.settings);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let mut target = serde_json::json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge_patch(
            &mut target,
            &serde_json::json!({"a": {"b": null, "e": 3}, "d": [3]}),
        );
        assert_eq!(target, serde_json::json!({"a": {"c": 2, "e": 3}, "d": [3]}));
        let from = serde_json::json!({"a": {"b": 1, "c": 2}, "x": true});
        let to = serde_json::json!({"a": {"c": 5, "n": {"k": 1}}, "y": "z"});
        let patch = diff_patch(&from, &to);
        let mut applied = from.clone();
        merge_patch(&mut applied, &patch);
        assert_eq!(applied, to);
        assert_eq!(diff_patch(&to, &to), Value::Null);
    }

    #[test]
    fn rules_and_tables_convert_both_ways() {
        let rules = ControlRules {
            default: Access::Locked,
            open: vec![Control::Churn, Control::Reset],
            locked: vec![Control::View],
            hidden: vec![Control::Compute],
        };
        let table = rules.table();
        assert_eq!(table.of(Control::Churn), Access::Open);
        assert_eq!(table.of(Control::Nag), Access::Locked);
        assert_eq!(table.of(Control::Compute), Access::Hidden);
        assert_eq!(table.of(Control::Replay), Access::Open);
        assert_eq!(table.of(Control::View), Access::Locked);
        assert_eq!(table.of(Control::Reset), Access::Open);
        assert_eq!(
            ControlRules::default().table().of(Control::Reset),
            Access::Hidden
        );
        assert_eq!(ControlRules::from_table(&table).table(), table);
    }

    #[test]
    fn a_lesson_file_round_trips_and_bad_ones_say_why() -> Result<()> {
        for lesson in builtin::lessons() {
            let text = lesson.to_json();
            assert!(Lesson::looks_like_lesson(&text));
            assert_eq!(Lesson::from_json(&text)?, lesson);
        }
        assert!(!Lesson::looks_like_lesson(
            &crate::run::RunSpec::default().to_json()
        ));
        let mut lesson = builtin::lessons().remove(0);
        lesson.stages[0].change = serde_json::json!({"spec": {"batch": 0}});
        let why = Lesson::from_json(&lesson.to_json())
            .expect_err("batch 0")
            .to_string();
        assert!(why.contains("stage 1") && why.contains("batch"), "{why}");
        lesson.stages.clear();
        assert!(lesson.validate().is_err());
        let typo = r#"{"format": "noisescope-lesson", "version": 1, "title": "t", "summary": "",
            "scene": {}, "stages": [{"title": "s", "text": "", "tab": "overview",
            "controls": {"open": ["chrun"]}}]}"#;
        let why = Lesson::from_json(typo)
            .expect_err("unknown control")
            .to_string();
        assert!(why.contains("chrun"), "{why}");
        Ok(())
    }
}
