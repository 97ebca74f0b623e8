//! documents: what filing a document does beyond storing it — the patient is told of a
//! document filed in their record by someone else (at once, or, for a document hidden
//! until the announcement consultation, a "record updated" notice two weeks later).

use crate::access::Interaction;
use crate::auth::{Actor, RequestContext};
use crate::consent;
use crate::error::FhirError;
use crate::repository::notices::{notice, Kind, Notice, INVISIBLE_NOTICE_DELAY_US};
use crate::repository::{HookTx, WriteHook, Written};

/// Tells the patient of a document just filed in their record (by someone else).
pub struct NewDocumentNotice;

impl WriteHook for NewDocumentNotice {
    fn written(&self, tx: &mut dyn HookTx, w: &Written<'_>) -> Result<(), FhirError> {
        let filed = matches!(
            w.interaction,
            Interaction::Create | Interaction::UpdateCreate
        );
        let (Some(ctx), Some(value)) = (w.ctx, w.value) else {
            return Ok(());
        };
        if w.resource.resource_type != "DocumentReference" || !filed {
            return Ok(());
        }
        let labels: Vec<String> = consent::Subject::of("DocumentReference", value)
            .labels
            .into_iter()
            .filter(|(s, _)| s == consent::TRE_A07)
            .map(|(_, c)| c)
            .collect();
        let notices: Vec<Notice> = tx
            .patients_of("DocumentReference", value)
            .iter()
            .filter_map(|p| {
                for_new_document(ctx, p, &w.resource.id, &labels, w.resource.last_updated_us)
            })
            .collect();
        tx.notify(notices)
    }
}

/// The notice of a new document filed in `patient`'s record by someone else than the
/// patient: at once, or — for a document hidden from the patient until the announcement
/// consultation — a "record updated" notice two weeks after filing, naming nothing.
pub fn for_new_document(
    ctx: &RequestContext,
    patient: &str,
    doc_id: &str,
    labels: &[String],
    filed_us: i64,
) -> Option<Notice> {
    if let Actor::Patient(_) = ctx.actor() {
        return None;
    }
    let patient_ref = format!("Patient/{patient}");
    if labels.iter().any(|l| l == consent::INVISIBLE_PATIENT) {
        return Some(notice(
            Kind::RecordUpdated,
            format!("record-updated|{doc_id}"),
            patient,
            vec![patient_ref],
            Vec::new(),
            "Votre dossier a été mis à jour : un document vous sera présenté par votre professionnel de santé.".into(),
            &labels.iter().filter(|l| *l != consent::INVISIBLE_PATIENT).cloned().collect::<Vec<_>>(),
            Some(filed_us + INVISIBLE_NOTICE_DELAY_US),
        ));
    }
    let by = match ctx.actor() {
        Actor::Practitioner(id) => format!(" par Practitioner/{id}"),
        _ => String::new(),
    };
    Some(notice(
        Kind::NewDocument,
        format!("new-document|{doc_id}"),
        patient,
        vec![patient_ref],
        vec![format!("DocumentReference/{doc_id}")],
        format!("Un nouveau document a été ajouté à votre dossier{by}."),
        labels,
        None,
    ))
}
