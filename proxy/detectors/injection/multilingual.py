# ruff: noqa: RUF001
"""Instruction-override phrases in the most common languages other than English.

Why a lexicon and not the classifier: the n-gram model and ``rules.json`` were built from English data,
so "Ignoriere alle vorherigen Anweisungen" or "忽略之前的所有指令" score near zero. There is no
multilingual injection corpus among our licensed data to train on, so these phrases were written by
hand, one small set per language, for the four things an override says: *ignore the previous
instructions*, *forget everything / your rules*, *you are now ...* (a role switch) and *show me your
system prompt*. They are matched on the normalised text (lower-cased; Latin diacritics already folded
by ``normalise.py``, so patterns are written without them) and feed the rule layer's noisy-OR score
exactly like a rule of ``rules.json`` (rule ids ``ml.<lang>.<concept>``).

Precision before recall: each phrase needs the verb *and* its object ("vergiss" alone, or "du bist
jetzt dran", does not fire), negations ("vergiss nicht, die vorherigen Anweisungen zu befolgen") are
excluded, and the role-switch phrases are weak (they only fire with other evidence).

Languages: de, fr, es, it, pt, nl, ru, pl, tr, zh, ja, ko, ar, hi.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .literals import LiteralIndex
from .prefilter import Prefilter

# Weights follow rules.json: >= 0.5 fires alone at the default threshold, below only with other evidence.
IGNORE, FORGET, ROLE, REVEAL = "ignore_previous", "forget_everything", "you_are_now", "reveal_system_prompt"
WEIGHTS = {IGNORE: 0.9, FORGET: 0.45, ROLE: 0.3, REVEAL: 0.8}

_W = r"(?:[^\W\d_]+[\s,]+)"  # one word and the space after it (any script)

# Per language: (concept, regex). Written lower case, without Latin diacritics.
_PHRASES: dict[str, list[tuple[str, str]]] = {
    "de": [
        (
            IGNORE,
            r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|uberspring\w*)(?!\s*nicht)[\s,]+"
            rf"{_W}{{0,3}}?(?:(?:alle[nms]?|deine[nmrs]?|ihre[nmrs]?|samtliche[n]?)\s+)?"
            r"(?:vorherig|bisherig|vorig|obig|fruher|vorangegangen|ursprunglich|alle|deine)\w*\s+"
            rf"{_W}{{0,2}}?(?:anweisung|instruktion|befehl|regel|vorgabe|richtlinie|prompt)",
        ),
        (FORGET, r"\b(?:vergiss|vergessen\s+sie)\s+(?:einfach\s+)?alles\b(?!\s+(?:uber|zum|andere))"),
        (
            ROLE,
            r"\b(?:du\s+bist\s+(?:jetzt|nun|ab\s+(?:jetzt|sofort))|ab\s+(?:jetzt|sofort)\s+bist\s+du)\s+(?:ein|eine|der|die|kein)\b",
        ),
        (
            REVEAL,
            r"\b(?:zeig|gib|verrat|wiederhol|nenn|druck|schreib)\w*\s+(?:\w+\s+){0,2}?"
            r"(?:deine[nmrs]?\s+|den\s+|die\s+)?(?:system-?prompt|systemanweisung|systemnachricht|system-anweisung)",
        ),
    ],
    "fr": [
        (
            IGNORE,
            r"(?<!n')\b(?:ignore[rz]?|oublie[rz]?|neglige[rz]?|fais\s+abstraction\s+de[s]?)(?!\s+pas\b)\s+"
            rf"{_W}{{0,3}}?(?:instructions?|consignes?|regles?|directives?|ordres?)\b\s*"
            r"(?:precedent\w*|anterieur\w*|ci-dessus|d'avant|initial\w*|qu'on\s+t'a\s+donne)",
        ),
        (
            IGNORE,
            r"(?<!n')\b(?:ignore[rz]?|oublie[rz]?)(?!\s+pas\b)\s+(?:toutes?\s+)?(?:tes|vos|toutes\s+les)\s+"
            r"(?:instructions?|consignes?|regles?|directives?)",
        ),
        (FORGET, r"(?<!n')\b(?:oublie[rz]?)\s+tout\b(?!\s+(?:sur|ce\s+que\s+je\s+t'ai\s+dit\s+sur))"),
        (
            ROLE,
            r"\b(?:(?:tu\s+es|vous\s+etes)\s+(?:maintenant|desormais|a\s+partir\s+de\s+maintenant)|a\s+partir\s+de\s+maintenant,?\s+(?:tu\s+es|tu\s+vas\s+agir|vous\s+etes))\b",
        ),
        (
            REVEAL,
            r"\b(?:montre|revele|affiche|repete|donne|dis|ecris|imprime)\w*[\s-]+(?:\w+\s+){0,2}?"
            r"(?:ton|votre|le|ta|tes|vos)\s+(?:prompt|invite|message|instructions?)\s+(?:du\s+|de\s+)?systeme",
        ),
    ],
    "es": [
        (
            IGNORE,
            r"\b(?:ignora|ignore|ignorar|olvida|olvide|olvidar|omite|descarta|haz\s+caso\s+omiso\s+a?)\s+"
            rf"{_W}{{0,3}}?(?:instrucciones|indicaciones|reglas|ordenes|directrices|normas)\s+"
            r"(?:\w+\s+)?(?:anteriores|previas|de\s+arriba|iniciales|originales|que\s+te\s+dieron)",
        ),
        (
            IGNORE,
            r"\b(?:ignora|ignore|olvida|olvide|omite|descarta)\s+(?:todas\s+)?(?:tus|sus|todas\s+las)\s+"
            r"(?:instrucciones|indicaciones|reglas|ordenes|directrices|normas)",
        ),
        (FORGET, r"(?<!no\s)\b(?:olvida|olvide)\s+todo\b(?!\s+(?:sobre|lo\s+que\s+dije\s+sobre))"),
        (
            ROLE,
            r"\b(?:(?:ahora|a\s+partir\s+de\s+ahora|desde\s+ahora),?\s+(?:eres|seras|actuaras\s+como)|eres\s+ahora)\b",
        ),
        (
            REVEAL,
            r"\b(?:muestra|muestrame|revela|repite|dime|imprime|escribe)\s+(?:\w+\s+){0,2}?"
            r"(?:tu|el|tus|las)\s+(?:prompt|mensaje|instrucciones)\s+(?:del|de)\s+sistema",
        ),
    ],
    "it": [
        (
            IGNORE,
            r"(?<!non\s)\b(?:ignora|ignori|ignorare|dimentica|dimentichi|trascura|tralascia)\s+"
            rf"{_W}{{0,3}}?(?:istruzioni|indicazioni|regole|ordini|direttive)\s+"
            r"(?:\w+\s+)?(?:precedenti|di\s+prima|sopra|iniziali|originali|ricevute)",
        ),
        (
            IGNORE,
            r"(?<!non\s)\b(?:ignora|ignori|dimentica|dimentichi)\s+(?:tutte\s+)?(?:le\s+)?(?:tue|sue|tutte\s+le)\s+"
            r"(?:istruzioni|indicazioni|regole|direttive)",
        ),
        (FORGET, r"(?<!non\s)\bdimentica\s+tutto\b(?!\s+(?:su|quello\s+che\s+ho\s+detto\s+su))"),
        (
            ROLE,
            r"\b(?:(?:ora|adesso|da\s+ora\s+in\s+poi|d'ora\s+in\s+poi),?\s+(?:sei|tu\s+sei|sarai)|sei\s+ora)\b",
        ),
        (
            REVEAL,
            r"\b(?:mostra|mostrami|rivela|ripeti|dimmi|stampa|scrivi)\s+(?:\w+\s+){0,2}?"
            r"(?:il\s+tuo|il|le\s+tue|le)\s+(?:prompt|messaggio|istruzioni)\s+di\s+sistema",
        ),
    ],
    "pt": [
        (
            IGNORE,
            r"(?<!nao\s)\b(?:ignore|ignora|ignorar|esqueca|esquece|esquecer|desconsidere|despreze)\s+"
            rf"{_W}{{0,3}}?(?:instrucoes|orientacoes|regras|ordens|diretrizes)\s+"
            r"(?:\w+\s+)?(?:anteriores|previas|acima|iniciais|originais|que\s+recebeu)",
        ),
        (
            IGNORE,
            r"(?<!nao\s)\b(?:ignore|ignora|esqueca|esquece|desconsidere)\s+(?:todas\s+)?(?:as\s+)?(?:suas|tuas|todas\s+as)\s+"
            r"(?:instrucoes|orientacoes|regras|diretrizes)",
        ),
        (FORGET, r"(?<!nao\s)\b(?:esqueca|esquece)\s+tudo\b(?!\s+(?:sobre|o\s+que\s+eu\s+disse\s+sobre))"),
        (
            ROLE,
            r"\b(?:(?:agora|a\s+partir\s+de\s+agora|de\s+agora\s+em\s+diante),?\s+(?:voce\s+e|voce\s+sera|tu\s+es|es)|voce\s+agora\s+e)\b",
        ),
        (
            REVEAL,
            r"\b(?:mostre|mostra|revele|revela|repita|diga|imprima|escreva)\s+(?:\w+\s+){0,2}?"
            r"(?:o\s+seu|o\s+teu|o|as\s+suas|as)\s+(?:prompt|mensagem|instrucoes)\s+do\s+sistema",
        ),
    ],
    "nl": [
        (
            IGNORE,
            r"\b(?:negeer|vergeet|negeren)(?!\s+niet)\s+"
            rf"{_W}{{0,3}}?(?:alle|je|jouw|uw|de)?\s*(?:vorige|eerdere|voorgaande|bovenstaande|alle|je|jouw)\s+"
            rf"{_W}{{0,1}}?(?:instructies|opdrachten|regels|aanwijzingen|richtlijnen|prompt)",
        ),
        (FORGET, r"\bvergeet\s+alles\b(?!\s+(?:over|wat\s+ik\s+zei\s+over))"),
        (ROLE, r"\b(?:je\s+bent\s+nu|jij\s+bent\s+nu|vanaf\s+nu\s+ben\s+je)\s+(?:een|de|het)\b"),
        (
            REVEAL,
            r"\b(?:toon|laat|herhaal|geef|onthul|print|schrijf)\s+(?:\w+\s+){0,2}?(?:je|jouw|de)\s+"
            r"(?:systeemprompt|systeem-prompt|systeeminstructies|systeembericht)",
        ),
    ],
    "ru": [
        (
            IGNORE,
            r"(?<!не\s)(?:проигнорируй|игнорируй|игнорируйте|забудь|забудьте|не\s+обращай\s+внимания\s+на|пренебреги)\s+"
            rf"{_W}{{0,3}}?(?:предыдущ|прежн|все|свои|вышеуказанн|вышеприведенн|данн)\w*\s+"
            rf"{_W}{{0,2}}?(?:инструкци|указани|правил|команд|промпт|установк)",
        ),
        (FORGET, r"(?<!не\s)(?:забудь|забудьте)\s+(?:вс[её]|обо\s+всем)(?!\s+(?:о|об|про)\s)"),
        (ROLE, r"(?:теперь|отныне|с\s+этого\s+момента)\s+ты\s+(?:—\s+|-\s+)?(?:не\s+)?[^\W\d_]+"),
        (
            REVEAL,
            r"(?:покажи|выведи|раскрой|повтори|напиши|скажи|распечатай)\s+(?:\w+\s+){0,2}?"
            r"(?:сво[йие]\s+)?системн\w*\s+(?:промпт|подсказк|инструкци|сообщени)",
        ),
    ],
    "pl": [
        (
            IGNORE,
            r"(?<!nie\s)\b(?:zignoruj|ignoruj|zapomnij|pomin|nie\s+zwazaj\s+na)\s+"
            rf"{_W}{{0,3}}?(?:poprzedni|wczesniejsz|wszystki|swoj|powyzsz)\w*\s+"
            rf"{_W}{{0,2}}?(?:instrukcj|polecen|zasad|regu[lł]|wytyczn)",
        ),
        (FORGET, r"(?<!nie\s)\bzapomnij\s+(?:o\s+)?wszystk\w*(?!\s+(?:o|na\s+temat)\s)"),
        (ROLE, r"\b(?:od\s+teraz|teraz)\s+(?:jestes|bedziesz)\b"),
        (
            REVEAL,
            r"\b(?:pokaz|ujawnij|powtorz|wypisz|podaj|napisz)\s+(?:\w+\s+){0,2}?"
            r"(?:sw[oó]j\s+|swoje\s+)?(?:prompt|instrukcj\w*|komunikat)\s+systemow",
        ),
    ],
    "tr": [
        (
            IGNORE,
            r"\b(?:onceki|yukaridaki|tum|butun|daha\s+onceki|sana\s+verilen)\s+"
            rf"{_W}{{0,2}}?(?:talimat|komut|kural|yonerge|istem)\w*\s+"
            rf"{_W}{{0,1}}?(?:yok\s+say|gormezden\s+gel|unut(?!ma)|dikkate\s+alma|ihmal\s+et)",
        ),
        (FORGET, r"\b(?:her\s+seyi|hersey[iı])\s+unut(?!ma)"),
        (ROLE, r"\b(?:artik|bundan\s+sonra|su\s+andan\s+itibaren)\s+sen\s+(?:bir\s+)?"),
        (
            REVEAL,
            r"\bsistem\s+(?:istemi|istemini|komutu|komutunu|talimatlar\w*|mesaj\w*|prompt\w*)\s+"
            rf"{_W}{{0,1}}?(?:goster|yaz|tekrarla|soyle|acikla|paylas)",
        ),
    ],
    "zh": [
        (
            IGNORE,
            r"(?:忽略|无视|忽视|不要理会|不用理会|忘记|忘掉|抛开)[^。！？\n]{0,8}?"
            r"(?:之前|以前|先前|上面|上述|前面|所有|你的|此前|原来|原有)[^。！？\n]{0,6}?"
            r"(?:指令|指示|说明|规则|提示|要求|设定|命令)",
        ),
        (FORGET, r"(?:忘记|忘掉)(?:你的)?(?:所有|一切|全部)"),
        (ROLE, r"(?:你现在是|从现在(?:开始|起)[，,]?\s*你(?:是|将|就是|要扮演))"),
        (
            REVEAL,
            r"(?:显示|输出|告诉我|重复|打印|透露|泄露|给我看|展示)[^。！？\n]{0,6}?(?:你的)?"
            r"(?:系统提示词?|系统指令|系统消息|系统设定|初始指令)",
        ),
    ],
    "ja": [
        (
            IGNORE,
            r"(?:以前|前|上記|これまで|すべて|全て|今まで|先ほど)の[^。！？\n]{0,8}?"
            r"(?:指示|命令|ルール|指令|プロンプト|設定)[^。！？\n]{0,4}?(?:を|は)?(?:すべて|全て)?"
            r"(?:無視|忘れ)",
        ),
        (FORGET, r"(?:すべて|全て|全部)(?:を)?忘れて"),
        (ROLE, r"(?:あなたは今から|今からあなたは|これからあなたは|あなたはこれから)"),
        (
            REVEAL,
            r"(?:システムプロンプト|システム指示|システムメッセージ|初期指示)[^。！？\n]{0,6}?"
            r"(?:を)?(?:表示|教えて|出力|繰り返|見せて|書き出)",
        ),
    ],
    "ko": [
        (
            IGNORE,
            r"(?:이전|앞의|위의|모든|기존|지금까지의)[^.!?\n]{0,10}?(?:지시|명령|규칙|지침|프롬프트|설정)"
            r"[^.!?\n]{0,8}?(?:무시|잊어)",
        ),
        (FORGET, r"(?:모든\s*것|모두|전부)을?\s*잊어"),
        (ROLE, r"(?:(?:지금부터|이제부터|이제)\s*(?:너는|당신은|넌)|너는\s*이제)"),
        (
            REVEAL,
            r"(?:시스템\s*프롬프트|시스템\s*지시|시스템\s*메시지|초기\s*지시)[^.!?\n]{0,8}?"
            r"(?:보여|알려|출력|반복|공개)",
        ),
    ],
    "ar": [
        (
            IGNORE,
            r"(?:تجاهل|تجاهلي|انس|إنس|انسى|اهمل|أهمل|لا\s+تلتزم\s+ب)[^.!?؟\n]{0,20}?"
            r"(?:التعليمات|الأوامر|الاوامر|القواعد|التوجيهات|تعليماتك|قواعدك)",
        ),
        (FORGET, r"(?:انس|إنس|انسى)\s+(?:كل\s+شيء|كل\s+شئ|كل\s+ما)"),
        (ROLE, r"(?:أنت\s+الآن|انت\s+الان|من\s+الآن\s+فصاعدا[،,]?\s+أنت)"),
        (
            REVEAL,
            r"(?:اعرض|أظهر|اظهر|اكشف|كرر|اطبع|أخبرني\s+ب)[^.!?؟\n]{0,20}?"
            r"(?:موجه\s+النظام|تعليمات\s+النظام|رسالة\s+النظام)",
        ),
    ],
    "hi": [
        (
            IGNORE,
            r"(?:पिछले|पहले\s+के|सभी|सारे|ऊपर\s+के|अपने)[^।!?\n]{0,20}?(?:निर्देश|निर्देशों|नियम|नियमों|आदेश|आदेशों)"
            r"[^।!?\n]{0,20}?(?:अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल\s+जा|इग्नोर)",
        ),
        (FORGET, r"(?:सब\s+कुछ|सबकुछ)\s+भूल\s+जा"),
        (ROLE, r"(?:अब\s+(?:से\s+)?(?:तुम|आप)\s+(?:एक\s+)?[^\s]+\s+(?:हो|हैं))"),
        (
            REVEAL,
            r"(?:सिस्टम\s+प्रॉम्प्ट|सिस्टम\s+निर्देश|सिस्टम\s+संदेश)[^।!?\n]{0,20}?"
            r"(?:दिखाओ|बताओ|दोहराओ|दिखाएं|बताएं|लिखो)",
        ),
    ],
}

LANGUAGES = tuple(_PHRASES)


@dataclass(frozen=True, slots=True)
class PhraseMatch:
    """One lexicon hit: ``rule_id`` is ``ml.<lang>.<concept>``; ``span`` indexes the scanned text."""

    rule_id: str
    weight: float
    span: tuple[int, int]


class MultilingualLexicon:
    """Compiled phrase list; immutable and thread-safe."""

    def __init__(self, phrases: dict[str, list[tuple[str, str]]] | None = None) -> None:
        compiled = []
        for lang, items in (_PHRASES if phrases is None else phrases).items():
            for concept, pattern in items:
                # The literals every match must contain (``prefilter.py``, exact): a phrase whose verb
                # or noun is absent is not run. Without this, 56 patterns cost ~2 ms per 2 KB of prose.
                gate = Prefilter.of(pattern, 0)
                if gate is None:
                    raise ValueError(f"phrase ml.{lang}.{concept} has no required literal")
                # The most selective group of each alternative: one of its strings must occur.
                keys = frozenset(s for alternative in gate.alternatives for s in alternative[0])
                compiled.append((f"ml.{lang}.{concept}", WEIGHTS[concept], re.compile(pattern), gate, keys))
        self._phrases = tuple(compiled)
        # One vectorised pass finds every key literal (``literals.py``): ~56 ``in`` searches per text
        # cost ~350 µs per 2 KB; the index ~20 µs.
        self._index = LiteralIndex(k for *_, keys in compiled for k in keys)
        by_key: dict[str, list[int]] = {}
        for i, (*_, keys) in enumerate(compiled):
            for k in keys:
                by_key.setdefault(k, []).append(i)
        self._by_key = {k: tuple(v) for k, v in by_key.items()}

    @classmethod
    @functools.cache
    def default(cls) -> MultilingualLexicon:
        return cls()

    def scan(self, text: str) -> list[PhraseMatch]:
        """Every phrase found in ``text`` (first hit per phrase). A phrase runs only when its required
        literals occur (exact: ``Prefilter`` keeps only literals every match contains)."""
        lowered = text.lower()
        present = self._index.present(lowered)
        if not present:
            return []
        out = []
        candidates = sorted({i for k in present for i in self._by_key[k]})
        for rule_id, weight, pattern, gate, _ in (self._phrases[i] for i in candidates):
            if not gate.may_match(lowered):
                continue
            m = pattern.search(lowered)
            if m is not None:
                out.append(PhraseMatch(rule_id, weight, m.span()))
        return out
