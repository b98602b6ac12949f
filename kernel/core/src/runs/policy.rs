//! What a run registers with the kernel's services while it runs, and withdraws when it
//! ends: its token/µUSD budgets (held by the broker's model calls) and its confirmation
//! policy (which effects need a person's yes).

use ractor::ActorProcessingErr;
use runloop_agent_actor::RunLimits;
use runloop_broker::config::Limit;
use runloop_proto::TraceId;

use super::Engine;
use super::actor::RunSpec;

/// Registers the run's token/µUSD budgets (the opening's policy and each node's
/// `budget_tokens`) so its nodes' model calls are held to them.
pub(super) fn register_budgets(engine: &Engine, spec: &RunSpec) -> Result<(), ActorProcessingErr> {
    let policy = &spec.opening.policy;
    let limits = RunLimits {
        run: Limit {
            tokens: policy.budget_tokens,
            usd_micros: policy.budget_usd_micros,
        },
        nodes: spec
            .opening
            .nodes
            .iter()
            .filter_map(|n| {
                let tokens = n.budget_tokens?;
                let limit = Limit {
                    tokens: Some(tokens),
                    usd_micros: None,
                };
                Some((n.id.to_string(), limit))
            })
            .collect(),
    };
    if !limits.is_limited() {
        return Ok(());
    }
    let trace: TraceId = spec.trace_id.parse()?;
    engine.kernel().run_budgets().register(trace, limits)?;
    Ok(())
}

/// Tells the effects service which of the run's effects need a person's yes.
pub(super) fn register_confirm_policy(engine: &Engine, spec: &RunSpec) {
    if let Some(effects) = engine.kernel().effects() {
        let opening = &spec.opening;
        let policy = crate::effects::gate::RunConfirmPolicy {
            confirm_external: opening.policy.confirm_external,
            confirm_nodes: opening
                .nodes
                .iter()
                .filter(|n| n.require_human_confirm)
                .map(|n| n.id.to_string())
                .collect(),
        };
        effects.shared.register_run(&spec.trace_id, policy);
    }
}

/// Forgets a finished run's confirmation policy; its requests still pending are denied
/// (the run ended before anyone answered).
pub(super) fn close_confirmations(engine: &Engine, trace_id: &str) {
    if let Some(effects) = engine.kernel().effects() {
        effects.shared.forget_run(trace_id);
        if let Some(gate) = effects.gate.get() {
            let _ = gate.cast(crate::effects::gate::GateMsg::WithdrawRun {
                trace_id: trace_id.to_owned(),
                reason: "the run ended before anyone answered".into(),
            });
        }
    }
}

/// Forgets a finished run's budgets, here and in the broker.
pub(super) fn close_budgets(engine: &Engine, trace_id: &str) {
    if let Ok(trace) = trace_id.parse::<TraceId>() {
        engine.kernel().run_budgets().remove(trace);
    }
    if let Some(broker) = engine.kernel().broker() {
        let _ = broker.cast(runloop_broker::BrokerMsg::CloseRun(trace_id.to_owned()));
    }
}
