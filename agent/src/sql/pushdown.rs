//! A filter on a readable column, `src_ip = '10.1.2.3'` over `flows`, becomes a filter on the
//! column form, `src_ip = <16 bytes>` over `flows_raw`, before the engine plans the scan: the
//! engine then skips row groups by their statistics instead of turning every row's address
//! into text. Only text `ip_text`/`mac_text` can produce is rewritten (the canonical form:
//! `10.1.2.3`, `2001:db8::1`, `3c:22:fb:00:00:2a`), so the answer never changes; any other
//! text stays a text comparison (which no row matches).

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::udf;

/// The optimizer rule; registered with every `sql` session.
#[derive(Debug, Default)]
pub struct TextFilterPushdown {
    /// Literals already warned about (the optimizer runs its rules more than once).
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OptimizerRule for TextFilterPushdown {
    fn name(&self) -> &str {
        "xdp_audit_text_filter_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.map_expressions(|e| e.transform(|e| rewrite(e, &self.warned)))
    }
}

/// `text_fn(x) = 'text'` (either side, `=` or `<>`) as `x = column_form('text')`.
fn rewrite(
    e: Expr,
    warned: &std::sync::Mutex<std::collections::HashSet<String>>,
) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else {
        return Ok(Transformed::no(e));
    };
    if !matches!(op, Operator::Eq | Operator::NotEq) {
        return Ok(Transformed::no(e));
    }
    let (call, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::ScalarFunction(f), Expr::Literal(v, _))
        | (Expr::Literal(v, _), Expr::ScalarFunction(f)) => (f, v),
        _ => return Ok(Transformed::no(e)),
    };
    let ScalarFunction { func, args } = call;
    let [arg] = args.as_slice() else {
        return Ok(Transformed::no(e));
    };
    let text = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s,
        _ => return Ok(Transformed::no(e)),
    };
    let Some(column) = udf::canonical_column(func, text) else {
        if let Some(written) = udf::other_spelling(func, text) {
            let first = warned.lock().map_or(true, |mut w| w.insert(text.clone()));
            if first {
                tracing::warn!(
                    "{arg} is compared as text with {text:?}, which no row holds: the flows view writes that value {written:?}"
                );
            }
        }
        return Ok(Transformed::no(e));
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr {
        left: Box::new(arg.clone()),
        op: *op,
        right: Box::new(Expr::Literal(column, None)),
    })))
}
