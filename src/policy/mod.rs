//! Risk assessment of tool calls: pure functions, table-tested.
//!
//! Today the level comes from the tool's MCP annotations as seen in `tools/list`; operator
//! rules, argument classifiers and blocking build on this (see the risk engine issue).

use crate::audit::event::RiskLevel;
use crate::mcp::ToolAnnotations;

/// The risk of calling a tool, from its annotations: unknown behaviour (none seen) is medium,
/// read-only is low, destructive (the MCP default for a tool that is not read-only) is high,
/// other writes are medium.
pub fn tool_risk(annotations: Option<&ToolAnnotations>) -> RiskLevel {
    let Some(a) = annotations else {
        return RiskLevel::Medium;
    };
    if a.read_only_hint == Some(true) {
        RiskLevel::Low
    } else if a.destructive_hint.unwrap_or(true) {
        RiskLevel::High
    } else {
        RiskLevel::Medium
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_annotations_and_mcp_defaults() {
        let a = |ro, de, ow| ToolAnnotations {
            read_only_hint: ro,
            destructive_hint: de,
            idempotent_hint: None,
            open_world_hint: ow,
        };
        let table = [
            (None, RiskLevel::Medium),
            (Some(a(Some(true), Some(true), None)), RiskLevel::Low),
            (Some(a(None, None, None)), RiskLevel::High),
            (
                Some(a(Some(false), Some(true), Some(false))),
                RiskLevel::High,
            ),
            (Some(a(Some(false), Some(false), None)), RiskLevel::Medium),
            (
                Some(a(Some(false), Some(false), Some(false))),
                RiskLevel::Medium,
            ),
        ];
        for (annotations, expected) in table {
            assert_eq!(tool_risk(annotations.as_ref()), expected, "{annotations:?}");
        }
    }
}
