"""Country names (English short forms): a location the small NER model often tags as ORG or misses.

General knowledge, not taken from any evaluation data. Ambiguous names that are common given
names or words (Chad, Jordan, Turkey, Georgia, Guinea, Niger) are left out.
"""

from __future__ import annotations

COUNTRIES: tuple[str, ...] = (
    "Afghanistan", "Albania", "Algeria", "Andorra", "Angola", "Argentina", "Armenia", "Australia",
    "Austria", "Azerbaijan", "Bahamas", "Bahrain", "Bangladesh", "Barbados", "Belarus", "Belgium",
    "Belize", "Benin", "Bhutan", "Bolivia", "Bosnia and Herzegovina", "Botswana", "Brazil", "Brunei",
    "Bulgaria", "Burkina Faso", "Burundi", "Cambodia", "Cameroon", "Canada", "Cape Verde",
    "Central African Republic", "Chile", "China", "Colombia", "Comoros", "Congo", "Costa Rica",
    "Croatia", "Cuba", "Cyprus", "Czech Republic", "Czechia", "Denmark", "Djibouti", "Dominica",
    "Dominican Republic", "Ecuador", "Egypt", "El Salvador", "Equatorial Guinea", "Eritrea", "Estonia",
    "Eswatini", "Ethiopia", "Fiji", "Finland", "France", "Gabon", "Gambia", "Germany", "Ghana",
    "Greece", "Greenland", "Grenada", "Guatemala", "Guyana", "Haiti", "Honduras", "Hong Kong",
    "Hungary", "Iceland", "India", "Indonesia", "Iran", "Iraq", "Ireland", "Israel", "Italy",
    "Ivory Coast", "Jamaica", "Japan", "Kazakhstan", "Kenya", "Kiribati", "Kosovo", "Kuwait",
    "Kyrgyzstan", "Laos", "Latvia", "Lebanon", "Lesotho", "Liberia", "Libya", "Liechtenstein",
    "Lithuania", "Luxembourg", "Madagascar", "Malawi", "Malaysia", "Maldives", "Mali", "Malta",
    "Marshall Islands", "Mauritania", "Mauritius", "Mexico", "Micronesia", "Moldova", "Monaco",
    "Mongolia", "Montenegro", "Morocco", "Mozambique", "Myanmar", "Namibia", "Nauru", "Nepal",
    "Netherlands", "New Zealand", "Nicaragua", "Nigeria", "North Korea", "North Macedonia", "Norway",
    "Oman", "Pakistan", "Palau", "Palestine", "Panama", "Papua New Guinea", "Paraguay", "Peru",
    "Philippines", "Poland", "Portugal", "Qatar", "Romania", "Russia", "Rwanda", "Saint Lucia",
    "Samoa", "San Marino", "Saudi Arabia", "Senegal", "Serbia", "Seychelles", "Sierra Leone",
    "Singapore", "Slovakia", "Slovenia", "Solomon Islands", "Somalia", "South Africa", "South Korea",
    "South Sudan", "Spain", "Sri Lanka", "Sudan", "Suriname", "Sweden", "Switzerland", "Syria",
    "Taiwan", "Tajikistan", "Tanzania", "Thailand", "Timor-Leste", "Togo", "Tonga",
    "Trinidad and Tobago", "Tunisia", "Turkmenistan", "Tuvalu", "Uganda", "Ukraine",
    "United Arab Emirates", "United Kingdom", "United States", "United States of America", "Uruguay",
    "Uzbekistan", "Vanuatu", "Vatican City", "Venezuela", "Vietnam", "Yemen", "Zambia", "Zimbabwe",
    "England", "Scotland", "Wales", "Northern Ireland", "Puerto Rico", "Faroe Islands",
)  # fmt: skip

#: Nationality adjectives (NRP: nationality, religious or political group). English forms;
#: names that are far more often ordinary words ("Polish" is kept, "Swiss" too) are fine here
#: because the gazetteer only looks at capitalised words.
DEMONYMS: tuple[str, ...] = (
    "Afghan", "Albanian", "Algerian", "American", "Andorran", "Angolan", "Argentine", "Argentinian",
    "Armenian", "Australian", "Austrian", "Azerbaijani", "Bahraini", "Bangladeshi", "Barbadian",
    "Belarusian", "Belgian", "Belizean", "Beninese", "Bhutanese", "Bolivian", "Bosnian", "Brazilian",
    "British", "Bruneian", "Bulgarian", "Burmese", "Burundian", "Cambodian", "Cameroonian",
    "Canadian", "Chadian", "Chilean", "Chinese", "Colombian", "Congolese", "Croatian", "Cuban",
    "Cypriot", "Czech", "Danish", "Dominican", "Dutch", "Ecuadorian", "Egyptian", "Emirati",
    "English", "Eritrean", "Estonian", "Ethiopian", "Fijian", "Filipino", "Finnish", "French",
    "Gabonese", "Gambian", "Georgian", "German", "Ghanaian", "Greek", "Guatemalan", "Guinean",
    "Haitian", "Honduran", "Hungarian", "Icelandic", "Indian", "Indonesian", "Iranian", "Iraqi",
    "Irish", "Israeli", "Italian", "Ivorian", "Jamaican", "Japanese", "Jordanian", "Kazakh",
    "Kenyan", "Korean", "Kosovar", "Kuwaiti", "Kyrgyz", "Laotian", "Latvian", "Lebanese", "Liberian",
    "Libyan", "Lithuanian", "Luxembourgish", "Macedonian", "Malagasy", "Malawian", "Malaysian",
    "Maldivian", "Malian", "Maltese", "Mauritanian", "Mauritian", "Mexican", "Moldovan", "Monegasque",
    "Mongolian", "Montenegrin", "Moroccan", "Mozambican", "Namibian", "Nepalese", "Nepali",
    "New Zealander", "Nicaraguan", "Nigerian", "Nigerien", "Norwegian", "Omani", "Pakistani",
    "Palestinian", "Panamanian", "Paraguayan", "Persian", "Peruvian", "Polish", "Portuguese",
    "Qatari", "Romanian", "Russian", "Rwandan", "Salvadoran", "Samoan", "Saudi", "Scottish",
    "Senegalese", "Serbian", "Sierra Leonean", "Singaporean", "Slovak", "Slovakian", "Slovenian",
    "Somali", "South African", "Spanish", "Sri Lankan", "Sudanese", "Surinamese", "Swazi", "Swedish",
    "Swiss", "Syrian", "Taiwanese", "Tajik", "Tanzanian", "Thai", "Togolese", "Tongan", "Tunisian",
    "Turkish", "Turkmen", "Ugandan", "Ukrainian", "Uruguayan", "Uzbek", "Venezuelan", "Vietnamese",
    "Welsh", "Yemeni", "Zambian", "Zimbabwean", "Chechen", "Catalan", "Basque", "Flemish", "Kurdish",
    "Tamil", "Punjabi", "Bengali", "Sikh", "Hindu", "Muslim", "Christian", "Catholic", "Protestant",
    "Jewish", "Buddhist", "Mormon", "Orthodox", "Lutheran", "Baptist", "Methodist", "Anglican",
    "Evangelical", "Republican", "Democrat", "Democratic", "Communist", "Socialist", "Conservative",
    "Liberal", "Labour",
)  # fmt: skip

#: Head words of job titles (general occupational vocabulary): a short line or an apposition
#: ("Ann Lee, the Technical writer, said") ending in one of these is a TITLE.
OCCUPATIONS: tuple[str, ...] = (
    "accountant", "actor", "actress", "administrator", "adviser", "advisor", "agent", "aide",
    "analyst", "architect", "artist", "assistant", "associate", "attendant", "auditor", "baker",
    "banker", "barber", "bartender", "buyer", "carpenter", "cashier", "chef", "chemist", "cleaner",
    "clerk", "coach", "collector", "consultant", "controller", "cook", "coordinator", "counselor",
    "counsellor", "curator", "dentist", "designer", "developer", "dietitian", "director",
    "dispatcher", "distributor", "doctor", "driver", "economist", "editor", "educator",
    "electrician", "engineer", "examiner", "executive", "farmer", "firefighter", "founder", "guard",
    "hygienist", "inspector", "installer", "instructor", "interpreter", "investigator", "janitor",
    "journalist", "judge", "laborer", "labourer", "lawyer", "lecturer", "librarian", "machinist",
    "manager", "mechanic", "nurse", "officer", "operator", "packager", "painter", "paralegal",
    "pharmacist", "photographer", "physician", "physicist", "pilot", "planner", "plumber",
    "policeman", "producer", "professor", "programmer", "psychologist", "recruiter",
    "representative", "repairer", "reporter", "researcher", "salesman", "scientist", "secretary",
    "soldier", "specialist", "statistician", "supervisor", "surgeon", "surveyor", "tailor",
    "teacher", "technician", "technologist", "therapist", "trainer", "translator", "treasurer",
    "tutor", "veterinarian", "waiter", "waitress", "welder", "worker", "writer",
)  # fmt: skip
