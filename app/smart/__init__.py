"""The SMART-on-FHIR app: launch from the EHR, then the per-leg pathway page for the patient in context."""
