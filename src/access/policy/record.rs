//! record: any resource of a patient's record without rules of its own (Observation,
//! Immunization, Appointment…): its compartment places it, the patient's rules and the
//! matrice d'habilitation decide (the trait's defaults). A type that gains rules gets a
//! file of its own.

use super::base::Policy;

pub(super) struct Record;

impl Policy for Record {}
