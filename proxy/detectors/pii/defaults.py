"""The entity types the ``pii`` plugin looks for unless the policy says otherwise.

Chosen for the first team that adopts the sidecar, typically a support or product team whose
prompts are everyday text: what identifies or reaches a person, or opens an account, is
redacted; what merely appears in ordinary questions is not. "What's the capital of France?",
"the meeting on 12 March", "release 4.2.0.1" and "Acme Inc" must reach the model unchanged.

In the default set:

* contact data: ``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``ADDRESS`` (street and postal
  addresses), ``ZIP_CODE`` (after a label), ``IP_ADDRESS`` (personal data under the GDPR);
* person names: ``PERSON``;
* government and health IDs: ``US_SSN``, ``US_ITIN``, ``US_PASSPORT``, ``US_DRIVER_LICENSE``,
  ``UK_NHS``, ``MEDICAL_LICENSE``;
* financial IDs: ``CREDIT_CARD``, ``IBAN_CODE``, ``US_BANK_NUMBER``, ``CRYPTO``;
* credentials: ``CREDENTIAL`` (API keys of known formats, JWTs, private keys, passwords).

Detected only when asked for (``detect: all``, or the type listed under ``entities``):
``LOCATION`` (countries, towns, places), ``DATE_TIME``, ``ORGANIZATION``, ``NRP``
(nationalities, religious and political groups), ``TITLE``, ``AGE``, ``URL``, ``UUID``,
``MAC_ADDRESS``. Types of the policy's own ``recognizers`` are always detected.
"""

from __future__ import annotations

DEFAULT_ENTITIES: frozenset[str] = frozenset(
    {
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "ADDRESS",
        "ZIP_CODE",
        "IP_ADDRESS",
        "PERSON",
        "US_SSN",
        "US_ITIN",
        "US_PASSPORT",
        "US_DRIVER_LICENSE",
        "UK_NHS",
        "MEDICAL_LICENSE",
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_BANK_NUMBER",
        "CRYPTO",
        "CREDENTIAL",
    }
)
