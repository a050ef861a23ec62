"""Clinical prose fragments for notes; contains no identifiers (those are added in notes.py)."""

from __future__ import annotations

from typing import TypedDict


class Diagnosis(TypedDict):
    """Prose for one admission diagnosis."""

    name: str
    presentation: str
    course: tuple[str, ...]
    medications: tuple[str, ...]
    follow_up: str


DIAGNOSES: dict[str, Diagnosis] = {
    "pneumonia": {
        "name": "community-acquired pneumonia of the right lower lobe",
        "presentation": "three days of productive cough, fevers to 38.9 C and right-sided pleuritic chest pain",
        "course": (
            "Blood and sputum cultures were obtained and empiric ceftriaxone with azithromycin "
            "was started in the emergency department.",
            "Imaging demonstrated a right lower lobe consolidation without pleural effusion.",
            "The oxygen requirement peaked at 3 L by nasal cannula and was weaned to room air by hospital day three.",
            "The fever curve resolved within 48 hours and the leukocytosis trended down.",
            "Antibiotics were narrowed once cultures returned without a resistant organism.",
        ),
        "medications": (
            "amoxicillin-clavulanate 875 mg by mouth twice daily to complete a 7-day course",
            "guaifenesin 600 mg by mouth every 12 hours as needed for cough",
            "acetaminophen 650 mg by mouth every 6 hours as needed for fever",
        ),
        "follow_up": "Repeat chest imaging is recommended in six to eight weeks to document "
        "resolution of the consolidation.",
    },
    "heart_failure": {
        "name": "acute on chronic heart failure with reduced ejection fraction",
        "presentation": "a week of progressive dyspnea on exertion, orthopnea and a weight gain "
        "of about four kilograms",
        "course": (
            "Intravenous furosemide was given twice daily with a net negative fluid balance of about six liters.",
            "An echocardiogram showed an ejection fraction of 30 percent with moderate mitral regurgitation.",
            "Renal function remained stable throughout diuresis.",
            "Guideline-directed therapy was optimized and a low sodium diet was reinforced.",
            "Telemetry showed no sustained arrhythmia.",
        ),
        "medications": (
            "furosemide 40 mg by mouth daily",
            "metoprolol succinate 50 mg by mouth daily",
            "sacubitril-valsartan 24-26 mg by mouth twice daily",
            "spironolactone 25 mg by mouth daily",
        ),
        "follow_up": "Daily weights with a call to the heart failure clinic for a gain of more "
        "than one kilogram in a day.",
    },
    "copd": {
        "name": "acute exacerbation of chronic obstructive pulmonary disease",
        "presentation": "increased sputum purulence, wheezing and shortness of breath over four days",
        "course": (
            "Nebulized albuterol and ipratropium were given every four hours with steady improvement.",
            "Prednisone 40 mg daily was started for a five day course.",
            "A viral panel was negative and doxycycline was added for purulent sputum.",
            "Ambulatory oxygen saturation was 91 percent on room air before discharge.",
            "Inhaler technique was reviewed with respiratory therapy.",
        ),
        "medications": (
            "prednisone 40 mg by mouth daily to complete five days",
            "tiotropium 18 mcg inhaled daily",
            "albuterol 90 mcg two puffs every 4 hours as needed",
        ),
        "follow_up": "Pulmonary rehabilitation referral was placed and spirometry should be "
        "repeated when clinically stable.",
    },
    "cellulitis": {
        "name": "cellulitis of the left lower extremity",
        "presentation": "two days of spreading redness, warmth and swelling of the left shin with low grade fevers",
        "course": (
            "The margins of erythema were marked on admission and receded with intravenous cefazolin.",
            "Venous duplex ultrasound was negative for deep vein thrombosis.",
            "There was no fluctuance to suggest an abscess requiring drainage.",
            "The leg was elevated and compression was deferred until the infection improved.",
            "Tinea pedis was identified as the likely portal of entry and treated topically.",
        ),
        "medications": (
            "cephalexin 500 mg by mouth four times daily for seven days",
            "clotrimazole 1 percent cream to the toe webs twice daily",
        ),
        "follow_up": "Wound check in the primary care clinic within one week.",
    },
    "pyelonephritis": {
        "name": "acute pyelonephritis",
        "presentation": "dysuria, right flank pain, rigors and vomiting for two days",
        "course": (
            "Urine culture grew pan-sensitive Escherichia coli.",
            "Intravenous ceftriaxone was continued until the patient was afebrile for 24 hours.",
            "Renal ultrasound showed no hydronephrosis or perinephric collection.",
            "Acute kidney injury resolved with intravenous fluids.",
            "Nausea resolved and oral intake was tolerated by hospital day two.",
        ),
        "medications": (
            "ciprofloxacin 500 mg by mouth twice daily to complete ten days",
            "ondansetron 4 mg by mouth every 8 hours as needed for nausea",
        ),
        "follow_up": "No routine test of cure is needed unless symptoms recur.",
    },
    "stroke": {
        "name": "acute ischemic stroke in the left middle cerebral artery territory",
        "presentation": "sudden right arm weakness and word-finding difficulty noticed by family",
        "course": (
            "The patient arrived outside the thrombolysis window and received aspirin.",
            "Brain imaging confirmed a small cortical infarct without hemorrhage.",
            "Carotid imaging showed less than 50 percent stenosis bilaterally.",
            "Telemetry did not capture atrial fibrillation.",
            "Speech therapy noted steady improvement in fluency during the stay.",
        ),
        "medications": (
            "aspirin 81 mg by mouth daily",
            "atorvastatin 80 mg by mouth nightly",
            "lisinopril 10 mg by mouth daily",
        ),
        "follow_up": "Outpatient neurology and speech therapy follow-up were arranged.",
    },
}

SOCIAL = (
    "Lives with a spouse and is independent in activities of daily living.",
    "Lives alone in a single-story home and uses a cane outdoors.",
    "Former smoker with a 30 pack-year history, quit twelve years ago.",
    "Drinks alcohol socially and denies other substance use.",
    "Retired schoolteacher who remains active in the community.",
)

EXAM = (
    "Alert and oriented, in no acute distress.",
    "Lungs with scattered rhonchi that clear with coughing.",
    "Heart with a regular rate and rhythm, no murmurs appreciated.",
    "Abdomen soft, non-tender, with normal bowel sounds.",
    "Trace bilateral ankle edema.",
    "No focal neurologic deficits apart from those described above.",
    "Skin warm and dry without new rashes.",
)

PLAN = (
    "Continue the current antibiotic regimen and reassess in the morning.",
    "Encourage ambulation with physical therapy twice daily.",
    "Check a basic metabolic panel and complete blood count tomorrow.",
    "Continue venous thromboembolism prophylaxis with subcutaneous heparin.",
    "Discussed the plan with the patient and family, who agree.",
    "Anticipate discharge in one to two days if progress continues.",
    "Hold home antihypertensives while blood pressure is soft.",
)

FINDINGS = {
    "CT": (
        "Lungs: Patchy consolidation in the right lower lobe with air bronchograms. No pneumothorax.",
        "Pleura: Trace right pleural effusion. No pleural thickening.",
        "Mediastinum: No lymphadenopathy by size criteria. The heart is normal in size.",
        "Vessels: The thoracic aorta is normal in caliber with mild atherosclerotic calcification.",
        "Upper abdomen: Limited images of the liver and adrenal glands are unremarkable.",
        "Bones: Degenerative changes of the thoracic spine without an aggressive lesion.",
    ),
    "MR": (
        "Brain parenchyma: Small focus of restricted diffusion in the left frontal cortex.",
        "White matter: Scattered T2 hyperintensities compatible with chronic small vessel disease.",
        "Ventricles: The ventricles and sulci are proportionate for age.",
        "Extra-axial spaces: No extra-axial collection or mass effect.",
        "Vascular flow voids: Normal flow voids in the major intracranial arteries.",
        "Orbits and sinuses: Mild mucosal thickening of the maxillary sinuses.",
    ),
}

IMPRESSION = {
    "CT": (
        "Right lower lobe consolidation compatible with pneumonia in the appropriate clinical setting.",
        "No pulmonary embolism to the segmental level.",
        "Recommend follow-up imaging to document resolution.",
    ),
    "MR": (
        "Small acute infarct in the left frontal cortex.",
        "Moderate chronic small vessel ischemic disease.",
        "No intracranial hemorrhage or mass.",
    ),
}

TECHNIQUE = {
    "CT": "Helical acquisition through the chest with 1.25 mm axial reconstructions and multiplanar reformats.",
    "MR": "Multiplanar multisequence imaging of the brain on a 3 tesla scanner including diffusion-weighted imaging.",
}

PAST_HISTORY = (
    "Hypertension, well controlled on a single agent.",
    "Type 2 diabetes mellitus managed with metformin.",
    "Hyperlipidemia on statin therapy.",
    "Osteoarthritis of both knees.",
    "Chronic kidney disease stage 3a with a baseline creatinine near 1.3 mg/dL.",
    "Gastroesophageal reflux disease.",
    "Remote appendectomy without complication.",
    "Hypothyroidism on levothyroxine replacement.",
)

ALLERGIES = (
    "No known drug allergies.",
    "Penicillin, which caused a rash in childhood.",
    "Sulfonamide antibiotics, which caused hives.",
    "Iodinated contrast with mild urticaria; premedication protocol on file.",
)

INSTRUCTIONS = (
    "Return to the emergency department for chest pain, shortness of breath, confusion or fever above 38.5 C.",
    "Resume a regular diet as tolerated and keep well hydrated.",
    "Avoid driving while taking sedating medications.",
    "Bring all medication bottles to the first follow-up appointment.",
    "A nurse will call within 48 hours to review the medication list.",
    "Increase activity gradually and use the walker until cleared by physical therapy.",
)

RADIOLOGY_CONTRAST = {
    "CT": "Intravenous contrast: 75 mL of iohexol 350 administered without immediate "
    "complication. Dose length product 412 mGy-cm.",
    "MR": "Gadolinium-based contrast was administered per protocol where indicated. No adverse reaction was observed.",
}

RECOMMENDATIONS = (
    "Clinical correlation is recommended.",
    "Comparison with outside studies would be helpful if they become available.",
    "Follow-up imaging is suggested according to current society guidelines.",
    "These results were discussed with the ordering team at the time of interpretation.",
)
