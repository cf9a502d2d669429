//! The replay cursor: which recorded state the views show. A run takes milliseconds, so play /
//! pause / step move a cursor over the recorded steps rather than pacing the sampler; during a
//! live run the cursor follows the newest state unless the user scrubbed.

/// Position of the views in the current run's states x_0 .. x_N.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// The chosen state when not following.
    pub step: usize,
    /// Show the newest state (the default; a new run keeps following).
    pub follow: bool,
    /// Advancing by itself.
    pub playing: bool,
    /// Fraction of a step accumulated while playing.
    carry: f64,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            step: 0,
            follow: true,
            playing: false,
            carry: 0.0,
        }
    }
}

impl Replay {
    /// The state to show among `count` recorded ones (0 when there are none).
    pub fn visible(&self, count: usize) -> usize {
        let last = count.saturating_sub(1);
        if self.follow {
            last
        } else {
            self.step.min(last)
        }
    }

    /// The user dragged the step slider: hold that state, stop playing.
    pub fn scrub(&mut self, step: usize) {
        self.step = step;
        self.follow = false;
        self.playing = false;
    }

    /// Plays from the shown state (from the start when at the end).
    pub fn play(&mut self, count: usize) {
        let shown = self.visible(count);
        self.step = if shown + 1 >= count { 0 } else { shown };
        self.follow = false;
        self.playing = true;
        self.carry = 0.0;
    }

    pub fn pause(&mut self, count: usize) {
        self.step = self.visible(count);
        self.follow = false;
        self.playing = false;
    }

    /// One state forward (paused afterwards).
    pub fn step_forward(&mut self, count: usize) {
        self.step = (self.visible(count) + 1).min(count.saturating_sub(1));
        self.follow = false;
        self.playing = false;
    }

    /// One state back (paused afterwards).
    pub fn step_back(&mut self, count: usize) {
        self.step = self.visible(count).saturating_sub(1);
        self.follow = false;
        self.playing = false;
    }

    /// Back to following the newest state.
    pub fn follow_live(&mut self) {
        self.follow = true;
        self.playing = false;
    }

    /// Advances a playing cursor by `dt` seconds at `speed` states per second. At the end of a
    /// finished run it stops and follows again; a running run's end may still grow.
    pub fn advance(&mut self, dt: f64, speed: f64, count: usize, running: bool) {
        if !self.playing || count == 0 {
            return;
        }
        self.carry += (dt * speed).max(0.0);
        // Whole states only; the fraction waits for the next frame.
        let whole = self.carry.floor();
        self.carry -= whole;
        self.step = self.step.saturating_add(whole as usize);
        if self.step + 1 >= count {
            self.step = count - 1;
            if !running {
                self.playing = false;
                self.follow = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_by_default_and_holds_a_scrubbed_state() {
        let mut r = Replay::default();
        assert_eq!(r.visible(0), 0);
        assert_eq!(r.visible(5), 4);
        r.scrub(2);
        assert_eq!(r.visible(19), 2);
        // A shorter (new, still running) run clamps the held state.
        assert_eq!(r.visible(2), 1);
        r.follow_live();
        assert_eq!(r.visible(19), 18);
    }

    #[test]
    fn play_runs_to_the_end_then_follows_and_step_moves_one() {
        let mut r = Replay::default();
        r.play(19);
        assert_eq!((r.visible(19), r.playing), (0, true));
        r.advance(0.25, 10.0, 19, false);
        assert_eq!(r.visible(19), 2);
        r.advance(0.05, 10.0, 19, false);
        assert_eq!(r.visible(19), 3, "the half steps add up");
        r.advance(100.0, 10.0, 19, false);
        assert_eq!((r.visible(19), r.playing, r.follow), (18, false, true));
        r.pause(19);
        r.step_forward(19);
        assert_eq!(r.visible(19), 18, "no step past the end");
        r.scrub(4);
        r.step_forward(19);
        assert_eq!((r.visible(19), r.playing), (5, false));
        r.step_back(19);
        r.step_back(19);
        assert_eq!(r.visible(19), 3);
        r.scrub(0);
        r.step_back(19);
        assert_eq!(r.visible(19), 0, "no step before x_0");
    }
}
