//! What a lesson looks like: the lesson panel on the right (title, stage, text, formula, what to
//! look at and try, and in presenter mode the stage's open controls), the Lessons menu, and the
//! "Save as lesson" window that writes the current scene, a text and the control locks to a
//! lesson file.

use std::path::Path;

use egui::{Color32, ComboBox, RichText, Ui};

use super::{ControlRules, FORMAT, Lesson, Stage, VERSION, builtin};
use crate::app::NoiseScopeApp;
use crate::app::controls::{self, Access, AccessTable, Action, Control, ControlsInfo};
use crate::app::dialogs::FileTask;
use crate::app::plot_style::SHOWN;
use crate::app::settings::Settings;

/// The formula's colour: the same bright yellow as the shown-step marker.
const FORMULA: Color32 = SHOWN;

/// "Save as lesson": the words and locks typed so far.
#[derive(Clone, Debug, PartialEq)]
pub struct LessonDraft {
    pub title: String,
    pub summary: String,
    pub stage_title: String,
    pub text: String,
    pub formula: String,
    pub look_at: String,
    pub try_this: String,
    pub access: AccessTable,
}

impl LessonDraft {
    /// A draft of the shown stage when a lesson is open (its words and locks), else an empty one
    /// with every run control locked.
    pub fn new(app: &NoiseScopeApp) -> Self {
        let locked = ControlRules::default().table();
        match app
            .active_lesson()
            .and_then(|a| a.current().map(|s| (a, s)))
        {
            Some((active, stage)) => LessonDraft {
                title: active.lesson.title.clone(),
                summary: active.lesson.summary.clone(),
                stage_title: stage.title.clone(),
                text: stage.text.clone(),
                formula: stage.formula.clone(),
                look_at: stage.look_at.clone(),
                try_this: stage.try_this.clone(),
                access: active.access,
            },
            None => LessonDraft {
                title: String::new(),
                summary: String::new(),
                stage_title: String::new(),
                text: String::new(),
                formula: String::new(),
                look_at: String::new(),
                try_this: String::new(),
                access: locked,
            },
        }
    }

    /// The one-stage lesson of `settings` (the current scene, its tab) with these words and locks.
    pub fn lesson(&self, settings: &Settings) -> Lesson {
        let or = |text: &str, fallback: &str| {
            if text.trim().is_empty() {
                fallback.to_string()
            } else {
                text.trim().to_string()
            }
        };
        Lesson {
            format: FORMAT.into(),
            version: VERSION,
            title: or(&self.title, "Untitled lesson"),
            summary: self.summary.trim().to_string(),
            scene: settings.clone(),
            stages: vec![Stage {
                title: or(&self.stage_title, &or(&self.title, "Untitled lesson")),
                text: self.text.trim().to_string(),
                formula: self.formula.trim().to_string(),
                look_at: self.look_at.trim().to_string(),
                try_this: self.try_this.trim().to_string(),
                tab: settings.view.tab,
                change: serde_json::Value::Null,
                controls: ControlRules::from_table(&self.access),
                pin_baseline: false,
            }],
        }
    }
}

impl NoiseScopeApp {
    /// The Lessons menu: the built-in lessons, then lesson files.
    pub(crate) fn lessons_menu(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        for lesson in builtin::lessons() {
            let title = lesson.title.clone();
            if ui
                .button(&title)
                .on_hover_text(lesson.summary.as_str())
                .clicked()
            {
                self.open_lesson(lesson);
                ui.close();
            }
        }
        ui.separator();
        let idle = !self.dialogs.is_open();
        if ui
            .add_enabled(idle, egui::Button::new("Open lesson file…"))
            .on_hover_text("A lesson saved with \"Save as lesson…\" (JSON); dropping it on the window opens it too.")
            .clicked()
        {
            actions.push(Action::File(FileTask::OpenLesson));
            ui.close();
        }
        if ui
            .add_enabled(idle, egui::Button::new("Save as lesson…"))
            .on_hover_text("The current scene and tab, a text you write and which controls stay open, locked or hidden, as a lesson file.")
            .clicked()
        {
            self.lesson_draft = Some(LessonDraft::new(self));
            ui.close();
        }
        if self.lesson.is_some() && ui.button("Leave the lesson").clicked() {
            self.leave_lesson();
            ui.close();
        }
    }

    /// The lesson panel on the right, while a lesson is open.
    pub(crate) fn lesson_panel(&mut self, ui: &mut Ui, actions: &mut Vec<Action>) {
        let Some(active) = self.lesson.as_ref() else {
            return;
        };
        let Some(stage) = active.current().cloned() else {
            return;
        };
        let (title, k, n) = (
            active.lesson.title.clone(),
            active.stage,
            active.lesson.stages.len(),
        );
        let (first, last) = (k == 0, active.is_last());
        let open_controls = active.access.only_open();
        let presenter = self.presenter.on;
        let width = if presenter { 460.0 } else { 380.0 };
        egui::Panel::right("lesson")
            .resizable(true)
            .default_size(width)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    ui.label(RichText::new(&title).heading());
                    ui.label(RichText::new(format!("stage {} of {n}", k + 1)).weak());
                    ui.add_space(4.0);
                    ui.label(RichText::new(&stage.title).strong().size(18.0));
                    ui.add_space(4.0);
                    for paragraph in stage.text.split("\n\n") {
                        ui.label(paragraph.trim());
                        ui.add_space(4.0);
                    }
                    if !stage.formula.is_empty() {
                        egui::Frame::group(ui.style()).show(ui, |ui| {
                            ui.label(RichText::new(&stage.formula).color(FORMULA).size(16.0));
                        });
                        ui.add_space(4.0);
                    }
                    for (head, text) in [("Look at", &stage.look_at), ("Try", &stage.try_this)] {
                        if !text.is_empty() {
                            ui.horizontal_wrapped(|ui| {
                                ui.label(RichText::new(format!("{head}:")).strong());
                                ui.label(text.as_str());
                            });
                        }
                    }
                    if presenter
                        && Control::ALL
                            .iter()
                            .any(|c| c.edits_spec() && open_controls.of(*c) == Access::Open)
                    {
                        ui.separator();
                        ui.label(RichText::new("Controls of this stage").strong());
                        let info = ControlsInfo {
                            classes: self.store.current.as_ref().map_or(0, |r| r.data.classes),
                            dirty: false,
                            playing: self.replay.playing,
                            dialog_open: self.dialogs.is_open(),
                            access: lesson_controls(open_controls),
                            denoiser: self.denoiser_info(),
                        };
                        controls::show(ui, &mut self.settings, &mut self.controls, &info, actions);
                    }
                    ui.separator();
                    ui.horizontal(|ui| {
                        if ui.add_enabled(!first, egui::Button::new("Back")).clicked() {
                            self.previous_stage();
                        }
                        let next = if last { "Finish" } else { "Next" };
                        if ui
                            .button(RichText::new(next).strong())
                            .on_hover_text("PageDown; PageUp goes back.")
                            .clicked()
                        {
                            if last {
                                self.leave_lesson();
                            } else {
                                self.next_stage();
                            }
                        }
                        if !last && ui.button("Leave lesson").clicked() {
                            self.leave_lesson();
                        }
                    });
                });
            });
    }

    /// The "Save as lesson" window while a draft is open.
    pub(crate) fn lesson_editor(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        let Some(mut draft) = self.lesson_draft.take() else {
            return;
        };
        let mut open = true;
        let mut save = false;
        egui::Window::new("Save as lesson")
            .open(&mut open)
            .default_width(520.0)
            .show(ctx, |ui| {
                ui.label(
                    RichText::new("The current scene and tab become the lesson's stage.").weak(),
                );
                egui::Grid::new("lesson-words")
                    .num_columns(2)
                    .show(ui, |ui| {
                        for (name, text, lines) in [
                            ("lesson title", &mut draft.title, 1),
                            ("one-line summary", &mut draft.summary, 1),
                            ("stage title", &mut draft.stage_title, 1),
                            ("text", &mut draft.text, 6),
                            ("formula", &mut draft.formula, 1),
                            ("look at", &mut draft.look_at, 2),
                            ("try", &mut draft.try_this, 2),
                        ] {
                            let label = ui.label(name);
                            ui.add(
                                egui::TextEdit::multiline(text)
                                    .desired_rows(lines)
                                    .desired_width(360.0),
                            )
                            .labelled_by(label.id);
                            ui.end_row();
                        }
                    });
                ui.separator();
                ui.label(RichText::new("Controls").strong());
                egui::ScrollArea::vertical()
                    .max_height(220.0)
                    .show(ui, |ui| {
                        egui::Grid::new("lesson-locks")
                            .num_columns(2)
                            .show(ui, |ui| {
                                for control in Control::ALL {
                                    ui.label(control.label());
                                    let mut access = draft.access.of(control);
                                    ComboBox::from_id_salt(("lesson-access", control as usize))
                                        .selected_text(access_name(access))
                                        .show_ui(ui, |ui| {
                                            for a in [Access::Open, Access::Locked, Access::Hidden]
                                            {
                                                ui.selectable_value(&mut access, a, access_name(a));
                                            }
                                        });
                                    draft.access.set(control, access);
                                    ui.end_row();
                                }
                            });
                    });
                ui.separator();
                if ui
                    .add_enabled(!self.dialogs.is_open(), egui::Button::new("Save…"))
                    .clicked()
                {
                    save = true;
                }
            });
        if save {
            actions.push(Action::File(FileTask::SaveLesson));
        }
        if open {
            self.lesson_draft = Some(draft);
        }
    }

    /// Writes the draft's lesson to `path` (the answer of the Save-as-lesson dialog).
    pub(crate) fn save_lesson(&mut self, path: &Path) {
        let Some(draft) = &self.lesson_draft else {
            return self.report_error("Save as lesson: no lesson to save".into());
        };
        let lesson = draft.lesson(&self.settings);
        match std::fs::write(path, lesson.to_json()) {
            Ok(()) => {
                self.status.info = Some(format!("saved the lesson to {}", path.display()));
                self.lesson_draft = None;
            }
            Err(e) => self.report_error(format!("{}: {e}", path.display())),
        }
    }

    /// Opens the lesson file at `path`; a bad file is an error in the status bar.
    pub fn load_lesson(&mut self, path: &Path) {
        let lesson = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Lesson::from_json(&text).map_err(|e| e.to_string()));
        match lesson {
            Ok(lesson) => self.open_lesson(lesson),
            Err(e) => self.report_error(format!("{}: {e}", path.display())),
        }
    }
}

/// In presenter mode the lesson panel shows the stage's open run controls only.
fn lesson_controls(open: AccessTable) -> AccessTable {
    let mut table = open;
    for c in [
        Control::Replay,
        Control::Rerun,
        Control::Reset,
        Control::View,
    ] {
        table.set(c, Access::Hidden);
    }
    table
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Open => "open",
        Access::Locked => "locked",
        Access::Hidden => "hidden",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_becomes_a_valid_one_stage_lesson_of_the_scene() -> crate::error::Result<()> {
        let app = NoiseScopeApp::new(Settings::default_scene());
        let mut draft = LessonDraft::new(&app);
        draft.title = "My lesson".into();
        draft.text = "First paragraph.\n\nSecond.".into();
        draft.access.set(Control::Churn, Access::Open);
        draft.access.set(Control::Compute, Access::Hidden);
        let mut settings = Settings::default_scene();
        settings.view.tab = crate::app::Tab::Curvature;
        settings.spec.stochasticity.churn = 5.0;
        let lesson = Lesson::from_json(&draft.lesson(&settings).to_json())?;
        assert_eq!(lesson.title, "My lesson");
        assert_eq!(lesson.stages.len(), 1);
        assert_eq!(lesson.stage_settings(0)?, settings);
        let table = lesson.stages[0].controls.table();
        assert_eq!(table.of(Control::Churn), Access::Open);
        assert_eq!(table.of(Control::Compute), Access::Hidden);
        assert_eq!(table.of(Control::Nag), Access::Locked);
        Ok(())
    }
}
