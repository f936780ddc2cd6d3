//! Handles of the series that every routed conversation and every frame
//! update, resolved once.
//!
//! `counter!` and `histogram!` build a key, hash its labels and look it up
//! in the recorder's registry on every call. On the hot path (about twenty
//! updates per conversation's life) that was ~5 % of the engine's CPU.
//! [`Meters`] looks each hot series up once, in the recorder current when it
//! is built, and keeps the handles; an update is then an atomic add.
//!
//! What it must never do: register a series that
//! [`register_series`](super::register_series) does not (so `/metrics` shows
//! the same series whether or not a `Meters` exists), or be built before the
//! recorder it should count into is installed (its handles would count into
//! the recorder of that moment, or nowhere).

use super::{
    intern, CONVERSATIONS_ABANDONED, CONVERSATIONS_ANSWERED, CONVERSATIONS_ANSWERED_WITHIN_TARGET,
    CONVERSATIONS_ASSIGNED, CONVERSATIONS_COMPLETED, CONVERSATIONS_OPENED,
    CONVERSATIONS_SLA_ELIGIBLE, CONVERSATIONS_TRANSFERRED, CONVERSATION_HANDLE_SECONDS,
    CONVERSATION_WAIT_SECONDS, DECISION_KINDS, OFFERS, OFFER_OUTCOMES, OPEN_TO_OFFER_SECONDS,
    ROUTING_DECISION_SECONDS, WS_IN_TYPES, WS_MESSAGES, WS_OUT_TYPES,
};
use super::{Direction, OfferOutcome};
use crate::routing::{ChannelId, QueueId, RoutingSettings};
use metrics::{counter, histogram, Counter, Histogram};

/// The KPI series of one channel × queue.
#[derive(Debug)]
pub struct CellMeters {
    pub opened: Counter,
    pub open_to_offer: Histogram,
    /// By [`OfferOutcome`], in the order of [`OFFER_OUTCOMES`].
    offers: [Counter; OFFER_OUTCOMES.len()],
    pub assigned: Counter,
    pub wait: Histogram,
    pub answered: Counter,
    pub sla_eligible: Counter,
    pub answered_within_target: Counter,
    pub completed: Counter,
    pub handle: Histogram,
    pub abandoned: Counter,
    pub transferred: Counter,
}

impl CellMeters {
    fn new(channel: &str, queue: &str) -> Self {
        let (ch, q) = (intern(channel), intern(queue));
        let c = |name: &'static str| counter!(name, "channel" => ch.clone(), "queue" => q.clone());
        let h =
            |name: &'static str| histogram!(name, "channel" => ch.clone(), "queue" => q.clone());
        CellMeters {
            opened: c(CONVERSATIONS_OPENED),
            open_to_offer: h(OPEN_TO_OFFER_SECONDS),
            offers: OFFER_OUTCOMES.map(|outcome| {
                counter!(OFFERS, "channel" => ch.clone(), "queue" => q.clone(), "outcome" => outcome)
            }),
            assigned: c(CONVERSATIONS_ASSIGNED),
            wait: h(CONVERSATION_WAIT_SECONDS),
            answered: c(CONVERSATIONS_ANSWERED),
            sla_eligible: c(CONVERSATIONS_SLA_ELIGIBLE),
            answered_within_target: c(CONVERSATIONS_ANSWERED_WITHIN_TARGET),
            completed: c(CONVERSATIONS_COMPLETED),
            handle: h(CONVERSATION_HANDLE_SECONDS),
            abandoned: c(CONVERSATIONS_ABANDONED),
            transferred: c(CONVERSATIONS_TRANSFERRED),
        }
    }

    /// The offers counter of one outcome.
    pub fn offers(&self, outcome: OfferOutcome) -> &Counter {
        &self.offers[outcome as usize]
    }
}

/// Handles of the hot series (see the module doc). Cheap to share: build one
/// per server, after [`install`](super::install).
#[derive(Debug)]
pub struct Meters {
    queues: usize,
    /// Channel-major: `cells[channel * queues + queue]`.
    cells: Vec<CellMeters>,
    ws_in: Vec<(&'static str, Counter)>,
    ws_out: Vec<(&'static str, Counter)>,
    decisions: Vec<(&'static str, Histogram)>,
}

impl Meters {
    /// Resolves every hot series of `settings` in the current recorder.
    pub fn new(settings: &RoutingSettings) -> Self {
        let cells = settings
            .channels
            .iter()
            .flat_map(|ch| {
                settings
                    .queues
                    .iter()
                    .map(move |q| CellMeters::new(&ch.name, &q.name))
            })
            .collect();
        let ws = |direction: Direction, types: &[&'static str]| {
            types
                .iter()
                .map(|&ty| {
                    let c = counter!(WS_MESSAGES, "direction" => direction.as_str(), "type" => ty);
                    (ty, c)
                })
                .collect()
        };
        Meters {
            queues: settings.queues.len(),
            cells,
            ws_in: ws(Direction::In, &WS_IN_TYPES),
            ws_out: ws(Direction::Out, &WS_OUT_TYPES),
            decisions: DECISION_KINDS
                .iter()
                .map(|&kind| (kind, histogram!(ROUTING_DECISION_SECONDS, "kind" => kind)))
                .collect(),
        }
    }

    /// The series of a configured channel × queue; `None` for an index
    /// outside the configuration.
    pub fn cell(&self, channel: ChannelId, queue: QueueId) -> Option<&CellMeters> {
        let (c, q) = (usize::from(channel.0), usize::from(queue.0));
        if q >= self.queues {
            return None;
        }
        self.cells.get(c * self.queues + q)
    }

    /// Counts one WebSocket frame of type `ty`.
    pub fn ws_message(&self, direction: Direction, ty: &'static str) {
        let known = match direction {
            Direction::In => &self.ws_in,
            Direction::Out => &self.ws_out,
        };
        match find(known, ty) {
            Some(c) => c.increment(1),
            None => super::ws_message(direction, ty),
        }
    }

    /// Records how long the core took for one command kind (or `timeout`).
    pub fn decision_latency(&self, kind: &'static str, secs: f64) {
        match find(&self.decisions, kind) {
            Some(h) => h.record(secs),
            None => super::decision_latency(kind, secs),
        }
    }
}

/// The handle registered for `name`, if it is one of the listed ones.
fn find<'a, T>(known: &'a [(&'static str, T)], name: &str) -> Option<&'a T> {
    known.iter().find(|(k, _)| *k == name).map(|(_, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_found_by_channel_and_queue_and_refuse_other_indexes() {
        let settings = RoutingSettings::example();
        let recorder = super::super::build_recorder(&settings).expect("recorder builds");
        let meters = metrics::with_local_recorder(&recorder, || Meters::new(&settings));
        let (channels, queues) = (settings.channels.len(), settings.queues.len());
        assert_eq!(meters.cells.len(), channels * queues);
        let last = (channels - 1) as u8;
        assert!(meters
            .cell(ChannelId(last), QueueId((queues - 1) as u16))
            .is_some());
        assert!(meters.cell(ChannelId(last + 1), QueueId(0)).is_none());
        assert!(meters.cell(ChannelId(0), QueueId(queues as u16)).is_none());
    }

    #[test]
    fn building_meters_registers_no_series_of_its_own() {
        let settings = RoutingSettings::example();
        let recorder = super::super::build_recorder(&settings).expect("recorder builds");
        let series = |text: String| -> std::collections::BTreeSet<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
                .collect()
        };
        let before = series(recorder.handle().render());
        let _meters = metrics::with_local_recorder(&recorder, || Meters::new(&settings));
        assert_eq!(series(recorder.handle().render()), before);
    }
}
