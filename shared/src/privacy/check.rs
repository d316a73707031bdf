//! Whether a privacy plan received from elsewhere is one a device may run. A device takes its
//! compiled study from the server, and shows the contributor the costs the plan states before
//! they consent: a plan whose stated costs are not what its mechanisms spend, or whose
//! mechanism adds no noise, would have the page promise one guarantee and keep a weaker one;
//! a domain that does not fit its values would panic the page's worker halfway through.

use super::accountant::{self, Accounting, Guarantee};
use super::oracle::Oracle;
use super::PrivacyPlan;
use chorus_messages::Channel;
use std::cmp::Ordering;

impl PrivacyPlan {
    /// Checks the plan for a study of `categories` categories and embeddings of `dim` floats:
    /// every channel's domain fits the values it privatizes, every ε is finite and positive,
    /// the embedding's projection fits the embedding and adds noise, and the costs the plan
    /// states are what its mechanisms spend, within the contributor's cap.
    pub fn check(&self, categories: usize, dim: usize) -> Result<(), String> {
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(format!("δ = {} is not between 0 and 1", self.delta));
        }
        if self.reports_per_contributor == 0 {
            return Err("a contributor may send no report".into());
        }
        for plan in &self.channels {
            let name = plan.channel.name();
            let (domain, epsilon) = (plan.oracle.domain(), plan.oracle.epsilon());
            if !(epsilon.is_finite() && epsilon > 0.0) {
                return Err(format!(
                    "the {name} channel has ε = {epsilon}: a device reports nothing without noise"
                ));
            }
            let values = self.values(plan.channel, categories).unwrap_or(plan.labels.len());
            if domain != values || plan.labels.len() != values || values < 2 {
                return Err(format!(
                    "the {name} channel's domain has {domain} values and {} labels for {values} values",
                    plan.labels.len()
                ));
            }
            if matches!(plan.oracle, Oracle::Olh { buckets, .. } if buckets < 2) {
                return Err(format!("the {name} channel hashes into fewer than two buckets"));
            }
        }
        if let Some(e) = &self.embedding {
            let fits = |v: &[f32]| v.len() == dim && v.iter().all(|x| x.is_finite());
            if e.components.is_empty() || !fits(&e.mean) || !e.components.iter().all(|c| fits(c)) {
                return Err(format!("the embedding's projection does not take {dim} floats"));
            }
            if !(e.clip.is_finite() && e.clip > 0.0 && e.sigma.is_finite() && e.sigma > 0.0) {
                return Err(format!("the embedding has bound {} and noise σ = {}", e.clip, e.sigma));
            }
        }
        let spent = accountant::account(&self.cost(), self.reports_per_contributor, self.delta);
        if !same_accounting(&self.accounting, &spent) {
            return Err(format!(
                "it states ε = {} per report and {} per contributor, but its mechanisms spend ε = {} and {}",
                self.accounting.per_report.epsilon,
                self.accounting.contributor.epsilon,
                spent.per_report.epsilon,
                spent.contributor.epsilon
            ));
        }
        let within_cap = spent.contributor.epsilon.partial_cmp(&self.contributor_epsilon_cap);
        if !matches!(within_cap, Some(Ordering::Less | Ordering::Equal)) {
            return Err(format!(
                "a contributor spends ε = {}, past the study's cap of {}",
                spent.contributor.epsilon, self.contributor_epsilon_cap
            ));
        }
        Ok(())
    }

    /// How many values the device privatizes on `channel` (None for the topic levels, whose
    /// labels are the domain: a device looks its topic up among them).
    fn values(&self, channel: Channel, categories: usize) -> Option<usize> {
        match channel {
            Channel::Category => Some(categories),
            Channel::Language => Some(self.languages.len() + 1),
            Channel::Concern => Some(5),
            Channel::Turns => Some(self.turn_buckets.len() + 1),
            Channel::HasCode => Some(2),
            Channel::TopicTop | Channel::TopicMid | Channel::TopicLeaf => None,
        }
    }
}

/// Equal but for the last bits of a float (the plan crossed JSON).
fn same_accounting(a: &Accounting, b: &Accounting) -> bool {
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs());
    let same = |g: &Guarantee, h: &Guarantee| close(g.epsilon, h.epsilon) && close(g.delta, h.delta);
    same(&a.per_report, &b.per_report) && same(&a.contributor, &b.contributor) && a.composition == b.composition
}

#[cfg(test)]
mod tests {
    use super::super::{ChannelConfig, PrivacyConfig};
    use super::*;
    use crate::privacy::oracle::OracleChoice;

    /// A plan of three categories (k-RR at ε = 1) and the concern level (at ε = 0.5).
    fn plan() -> PrivacyPlan {
        let channel = |epsilon| ChannelConfig {
            epsilon,
            oracle: OracleChoice::Auto,
            pool: None,
        };
        let config = PrivacyConfig {
            channels: [(Channel::Category, channel(1.0)), (Channel::Concern, channel(0.5))].into(),
            embedding: None,
            contributor_epsilon_cap: 10.0,
            ..PrivacyConfig::default()
        };
        let categories = ["a", "b", "c"].map(String::from);
        PrivacyPlan::build(&config, &categories, &[], &[]).unwrap()
    }

    /// The plan with the category's oracle replaced, its accounting stated honestly.
    fn with_category_oracle(oracle: Oracle) -> PrivacyPlan {
        let mut p = plan();
        p.channels
            .iter_mut()
            .find(|c| c.channel == Channel::Category)
            .unwrap()
            .oracle = oracle;
        p.accounting = accountant::account(&p.cost(), p.reports_per_contributor, p.delta);
        p
    }

    #[test]
    fn a_plan_as_compiled_is_accepted() {
        plan().check(3, 384).unwrap();
    }

    #[test]
    fn understated_costs_are_refused() {
        let mut understated = plan();
        understated.accounting.contributor.epsilon /= 2.0;
        let error = understated.check(3, 384).unwrap_err();
        assert!(error.contains("but its mechanisms spend"), "{error}");
        let mut over_cap = plan();
        over_cap.contributor_epsilon_cap = 0.5;
        assert!(over_cap.check(3, 384).unwrap_err().contains("past the study's cap"));
    }

    #[test]
    fn a_channel_without_noise_or_with_a_domain_too_small_is_refused() {
        let exact = with_category_oracle(Oracle::Krr {
            domain: 3,
            epsilon: f64::INFINITY,
        });
        assert!(exact.check(3, 384).unwrap_err().contains("without noise"));
        let narrow = with_category_oracle(Oracle::Krr {
            domain: 2,
            epsilon: 1.0,
        });
        assert!(narrow.check(3, 384).unwrap_err().contains("domain has 2 values"));
        assert!(plan().check(4, 384).unwrap_err().contains("for 4 values"));
    }
}
