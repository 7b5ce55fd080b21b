//! Links: the verifier's queue, a link's identity confirmation file, and the responsible
//! authority's decision.

use std::sync::Arc;

use connectors::SourceSystem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::guard::{Gate, Operation};
use super::{LinkDetails, LinkEvent, LinkFilter};
use crate::access::{Access, Principal};
use crate::clock::Clock;
use crate::error::HubError;
use crate::matching::LinkColour;
use crate::store::{LinkQuery, LinkStore, VerifyRefusal};

/// A link's identity confirmation file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfirmationFile {
    #[serde(flatten)]
    pub link: LinkDetails,
    /// Yellow and past its deadline.
    pub overdue: bool,
    pub history: Vec<LinkEvent>,
}

/// One page of links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkPage {
    pub links: Vec<LinkDetails>,
    /// Links matching the filters, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A verifier's decision on a link.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// white (same person, legitimate), green (different persons) or red (identity fraud).
    pub colour: LinkColour,
    /// Why: required, and kept in the link's history with the verifier's name.
    pub justification: String,
}

/// The links service: what verifiers see and decide.
#[derive(Debug)]
pub struct Links {
    pub(super) gate: Arc<Gate>,
    pub(super) links: LinkStore,
    pub(super) clock: Clock,
}

impl Links {
    /// The caller's verification queue: the links its authority verifies, filtered and
    /// paged. Links outside it reach a caller only inside a record it may read.
    pub async fn queue(
        &self,
        principal: &Principal,
        filter: LinkFilter,
    ) -> Result<LinkPage, HubError> {
        let query = LinkQuery::from(filter);
        let described = format!(
            "colour={} system={} overdue={}",
            query.colour.map_or("any", LinkColour::as_str),
            query.system.map_or("any", SourceSystem::as_str),
            query
                .overdue
                .map_or("any", |o| if o { "true" } else { "false" }),
        );
        let query = &query;
        self.gate
            .guarded_read(
                principal,
                Operation::ListLinks,
                described,
                |access| async move {
                    let (links, total) = self
                        .links
                        .list(query, &access.verifier_queue(), self.clock.now())
                        .await?;
                    Ok(LinkPage {
                        links: links.into_iter().map(LinkDetails::from).collect(),
                        total,
                        limit: query.limit,
                        offset: query.offset,
                    })
                },
                |page| format!("links={}", page.links.len()),
            )
            .await
    }

    /// A link's identity confirmation file, for its responsible authority; any other
    /// caller is answered as if the link did not exist.
    pub async fn file(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<ConfirmationFile, HubError> {
        self.gate
            .guarded_read(
                principal,
                Operation::ReadLink,
                String::new(),
                |access| async move { self.visible_link(&access, id).await },
                |file| format!("colour={}", file.link.colour.as_str()),
            )
            .await
    }

    async fn visible_link(&self, access: &Access, id: &str) -> Result<ConfirmationFile, HubError> {
        let (link, history) = self.links.get(id).await?.ok_or(HubError::LinkNotFound)?;
        if !access.may_verify(&link) {
            return Err(HubError::LinkNotFound);
        }
        let overdue = link.colour == LinkColour::Yellow
            && link.deadline.is_some_and(|d| d < self.clock.now());
        Ok(ConfirmationFile {
            link: link.into(),
            overdue,
            history: history.into_iter().map(LinkEvent::from).collect(),
        })
    }

    /// Records a verifier's decision with its justification. Only the link's responsible
    /// authority decides.
    #[tracing::instrument(name = "verify", skip_all)]
    pub async fn verify(
        &self,
        principal: &Principal,
        id: &str,
        decision: Verification,
    ) -> Result<ConfirmationFile, HubError> {
        self.gate
            .guarded(
                principal,
                Operation::Verify,
                format!("colour={}", decision.colour.as_str()),
                |access| self.verify_checked(access, id, decision),
                |file| format!("colour={}", file.link.colour.as_str()),
            )
            .await
    }

    async fn verify_checked(
        &self,
        access: Arc<Access>,
        id: &str,
        decision: Verification,
    ) -> Result<ConfirmationFile, HubError> {
        // Only the link's verifier finds it; anyone else is answered as if it did not exist.
        self.visible_link(&access, id).await?;
        if decision.colour == LinkColour::Yellow {
            return Err(HubError::InvalidDecision(
                "a decision is white, green or red; yellow is the detector's",
            ));
        }
        let justification = decision.justification.trim();
        if justification.is_empty() {
            return Err(HubError::InvalidDecision(
                "a decision needs a justification",
            ));
        }
        let verifier = access.principal().rule_subject();
        match self
            .links
            .verify(
                id,
                decision.colour,
                justification,
                &verifier,
                self.clock.now(),
            )
            .await?
        {
            Ok(()) => {}
            Err(VerifyRefusal::NotFound) => return Err(HubError::LinkNotFound),
            Err(VerifyRefusal::AlreadyThatColour) => return Err(HubError::AlreadyDecided),
        }
        tracing::info!(colour = decision.colour.as_str(), "link verified");
        self.visible_link(&access, id).await
    }
}
