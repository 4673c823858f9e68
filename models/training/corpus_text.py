"""Texts for the synthetic training corpus.

Three sources, mixed by ``models.training.corpus``:

* hand-written English sentences (questions, numbers, names, lip-heavy
  phrases, long and short) -- ``ENGLISH``;
* random word sequences from the CMU pronouncing dictionary that ships with
  pocketsphinx, for phonetic coverage, with a bias towards words whose lips
  are visible (bilabials, labiodentals, rounded vowels) -- ``random_words``;
* short sentences in the other languages espeak-ng speaks, and random
  syllable strings built from each language's letters -- ``FOREIGN``,
  ``random_syllables``.

Every sentence has a fixed index; indices divisible by ``VAL_EVERY`` are
reserved for the validation split so that no validation text is ever
trained on.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

VAL_EVERY = 8

ENGLISH: tuple[str, ...] = (
    "Maybe baby mum made me a map of the moon.",
    "Hello, how are you doing today?",
    "Please bring me a bowl of warm bean soup.",
    "We will meet by the bridge at about five past nine.",
    "Peter Piper picked a peck of pickled peppers.",
    "Who would have thought it would rain in the middle of May?",
    "The number is four hundred and twenty-seven.",
    "My phone number ends in three, eight, one, zero.",
    "Bob and Mabel bought a big blue boat.",
    "Why not?",
    "Yes.",
    "No, thank you.",
    "Could you move the box over by the window, please?",
    "Fifteen people voted for the proposal and six against it.",
    "Amelia flew from Boston to Bombay on the fourth of February.",
    "I'm sorry, I didn't quite catch that. Could you say it again?",
    "Vivid violet flowers bloomed beneath the old oak tree.",
    "The weather forecast promises sunshine for the whole weekend.",
    "Whatever you do, don't forget to water the plants.",
    "A moment of patience prevents a thousand moments of regret.",
    "Mom, may I have some more mashed potatoes?",
    "Ninety-nine bottles of milk were moved to the back room.",
    "She sells seashells by the seashore.",
    "Our meeting has been moved to Wednesday morning at ten thirty.",
    "What time does the museum open on Sunday?",
    "Welcome back! We missed you.",
    "The price went up by twelve point five percent in one year.",
    "Bubbles popped above the bathtub while the baby babbled.",
    "Please remember to bring your passport and boarding pass.",
    "How much would a woodchuck chuck if a woodchuck could chuck wood?",
    "The quick brown fox jumps over the lazy dog.",
    "Thomas wrote three thoughtful letters this Thursday.",
    "Good morning, everyone, and thank you for coming.",
    "I believe we can finish the whole project before the end of the month.",
    "Is it true that Mary moved to Melbourne?",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "Five fluffy puppies fell fast asleep on the sofa.",
    "Would you like to order now, or do you need a few more minutes?",
    "The doctor will see you in about fifteen minutes.",
    "Umm, well, maybe we should wait a bit.",
    "Oh wow, that's amazing!",
    "Every morning Paul buys a paper and a blueberry muffin.",
    "The temperature dropped to minus four degrees overnight.",
    "Where are my keys? I put them right here a minute ago.",
    "We offer free shipping on all orders over fifty dollars.",
    "The museum of modern art opens its new wing in November.",
    "Michael, Barbara and Fiona played football in the park.",
    "Turn left at the bakery, then walk two blocks past the bank.",
    "Listen carefully: the password has eight characters.",
    "Smooth moves make for a beautiful performance.",
    "Rumours about the merger spread quickly through the office.",
    "Our flight was delayed by nearly two hours because of fog.",
    "Wow, you really outdid yourself this time.",
    "Put the pen back in the pot when you've finished.",
    "Have you ever been to Mumbai, Madrid or Montreal?",
    "The baby bear wanted more porridge.",
    "Customer service is available twenty-four hours a day, seven days a week.",
    "Let me think about it for a moment before I answer.",
    "Which would you prefer, the blue one or the purple one?",
    "The bus leaves at seven fifteen from platform B.",
    "I've been waiting for this moment my whole life.",
    "Valerie values her vintage violin above everything else.",
    "Please make sure the microphone is muted during the presentation.",
    "Opportunities multiply as they are seized.",
    "Who was the first person to walk on the moon?",
    "Mmm, this pumpkin pie is perfect.",
    "My brother Ben prefers beef burgers with mustard.",
    "Our team will present the results at the meeting in Vienna.",
    "It's a beautiful day to be outside.",
    "Hmm, I'm not sure about that.",
    "You owe me twenty-two pounds and fifty pence.",
    "Pop music plays on the radio from morning till midnight.",
    "I'll be back before you know it.",
    "Why would anyone want to move away from the beach?",
    "The wolf howled at the full moon over the woods.",
    "Please wipe your boots before you walk in.",
    "We measured the room: it's four metres by five.",
    "Members of the public may submit feedback by phone or email.",
    "Thank you very much for your patience.",
    "A warm cup of cocoa by the fire sounds wonderful.",
    "Bob's mom promised him a puppy for his birthday.",
    "The new model weighs only nine hundred grams.",
    "Which way to the nearest pharmacy, please?",
    "My favourite food is pasta with fresh basil and tomatoes.",
    "Good job, everybody! We made it.",
    "Every evening we walk along the river and watch the boats.",
    "The final score was three to one.",
    "Meet me at the main entrance of the mall at half past four.",
    "Would it be possible to book a room for two nights?",
    "Barbara's umbrella blew away in the wild wind.",
    "Quick, grab the map before the wind blows it away!",
    "In nineteen ninety-five, the population was about two million.",
    "Oh no, I missed the bus again.",
    "Maybe we can grab lunch tomorrow?",
    "Whoever wins will move on to the final round.",
    "My mother makes marvellous marmalade from bitter oranges.",
    "Please hold while I transfer your call.",
    "Big black bugs bleed blue black blood.",
    "Few people knew about the hidden path behind the mill.",
    "How many miles is it from here to the mountains?",
    "The film begins promptly at eight, so please be punctual.",
    "Yesterday I bought a beautiful blue vase at the market.",
    "Mumbling makes it much harder to understand what you mean.",
    "Our office is on the fifth floor, room five hundred and four.",
    "Voices echoed through the empty warehouse.",
    "Can you believe it's already the first of June?",
    "He whispered, 'Be careful what you wish for.'",
    "My email address is mike at example dot com.",
    "The bridge was built in eighteen eighty-three.",
    "Patience, persistence and perspiration make an unbeatable combination.",
    "When will the package arrive?",
    "Pumpkins, peppers and potatoes were piled up by the barn.",
    "I'm happy to help with anything else you might need.",
    "Would you mind opening the window a little?",
    "Ooh, look at the balloons!",
    "Please follow me; your table is by the window.",
    "We went to Paris, Rome and Prague in one week.",
    "Mama made mango smoothies for the whole family.",
    "The movie was much better than the book.",
    "Whose umbrella is this?",
    "The lab results will be ready by Friday afternoon.",
    "Jump, Jimmy, jump!",
    "I'd like two coffees, a cappuccino and an orange juice.",
    "Bravo! What a marvellous performance.",
    "Fortunately, nobody was hurt in the accident.",
    "We hope to welcome you back very soon.",
    "Time flies when you're having fun.",
    "Ma'am, may I help you with your bags?",
    "The map shows a path through the marsh to the farm.",
    "Over a million people visit the palace every year.",
    "Remember, remember the fifth of November.",
    "Bye for now, and have a wonderful evening!",
    "Beep, beep! Move over, please.",
    "Moving forward, we will focus on improving performance.",
    "Warm wool mittens will keep your fingers from freezing.",
    "Oops, I think I pressed the wrong button.",
    "Pip, Poppy and Bam-Bam played by the pool.",
    "Seventy-seven members of the band performed at the festival.",
)

FOREIGN: dict[str, tuple[str, ...]] = {
    "cmn": (
        "你好，世界。",
        "我们今天去北京。",
        "请问现在几点了？",
        "妈妈买了八个苹果。",
        "明天的天气怎么样？",
        "谢谢你的帮助，我非常高兴。",
        "不好意思，我听不懂。",
        "我们一起吃饭吧！",
    ),
    "yue": (
        "你好，早晨。",
        "今日天氣好好。",
        "唔該你幫我買杯咖啡。",
        "我哋聽日見啦。",
        "呢個幾多錢呀？",
        "多謝晒！",
    ),
    "es": (
        "Hola, ¿cómo estás?",
        "Mi madre me mandó un mensaje muy bonito.",
        "Buenos días, ¿puedo ayudarle?",
        "El museo abre a las nueve de la mañana.",
        "¿Cuánto cuesta este libro?",
        "Vamos a la playa mañana por la tarde.",
        "Muchas gracias por venir.",
    ),
    "de": (
        "Guten Morgen, wie geht es dir?",
        "Meine Mutter macht morgen Mittagessen.",
        "Wo ist der Bahnhof, bitte?",
        "Wir fahren im Sommer nach Berlin.",
        "Vielen Dank für Ihre Hilfe.",
        "Das Wetter ist heute wunderbar.",
        "Möchtest du ein Stück Kuchen?",
    ),
    "fr": (
        "Bonjour, comment allez-vous ?",
        "Ma mère a préparé une bonne soupe.",
        "Où est la boulangerie, s'il vous plaît ?",
        "Nous partons pour Paris demain matin.",
        "Merci beaucoup pour votre patience.",
        "Il fait beau aujourd'hui.",
        "Voulez-vous un peu plus de pain ?",
    ),
    "it": (
        "Buongiorno, come stai?",
        "Mamma mia, che bella giornata!",
        "Vorrei un cappuccino e una brioche.",
        "Il museo apre alle nove.",
        "Grazie mille per il tuo aiuto.",
        "Dove possiamo mangiare una buona pizza?",
    ),
    "pt-br": (
        "Olá, tudo bem?",
        "Minha mãe mora em Belo Horizonte.",
        "Bom dia, posso ajudar?",
        "Vamos para a praia amanhã.",
        "Muito obrigado pela sua paciência.",
        "Quanto custa este livro?",
    ),
    "hi": (
        "नमस्ते, आप कैसे हैं?",
        "मेरा नाम माया है।",
        "आज मौसम बहुत अच्छा है।",
        "कृपया मुझे पानी दीजिए।",
        "हम कल बाज़ार जाएंगे।",
        "बहुत बहुत धन्यवाद।",
    ),
    "ru": (
        "Привет, как дела?",
        "Мама мыла раму.",
        "Где находится метро?",
        "Мы поедем в Москву в мае.",
        "Большое спасибо за помощь.",
        "Сегодня очень хорошая погода.",
    ),
}

# Letters used to build pronounceable random syllables per language (espeak
# reads them with its letter-to-sound rules).
_SYLLABLE_LETTERS: dict[str, tuple[str, str]] = {
    "es": ("bcdfglmnprstvz", "aeiou"),
    "de": ("bdfghklmnprstwz", "aeiouäöü"),
    "fr": ("bdfglmnprstvz", "aeiouéè"),
    "it": ("bcdfglmnprstvz", "aeiou"),
    "pt-br": ("bdfglmnprstvz", "aeiouão"),
    "ru": ("бвгдзклмнпрстфш", "аеиоуыэюя"),
}
# Common Han characters: a random string of them is a random syllable string
# for the Mandarin and Cantonese voices.
_HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过"
    "家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本"
    "见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明社长门马北"
    "买卖吗妈爸包饭茶水火山风雨花鸟鱼猫狗书笔钱车路"
)


def validation_index(i: int) -> bool:
    return i % VAL_EVERY == 0


def pick_sentence(pool: tuple[str, ...], rng: random.Random, split: str) -> str:
    """A sentence from ``pool`` restricted to the split's indices."""
    idx = [i for i in range(len(pool)) if validation_index(i) == (split == "val")]
    return pool[rng.choice(idx)]


@lru_cache(maxsize=1)
def cmu_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(all plain words, lip-visible words) from pocketsphinx's CMU dictionary."""
    path = cmudict_path()
    words, visible = [], []
    lip_phones = {"P", "B", "M", "F", "V", "W", "UW", "OW", "OY"}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 2 or "(" in parts[0] or not parts[0].isalpha() or not 2 <= len(parts[0]) <= 12:
            continue
        words.append(parts[0])
        if lip_phones & set(parts[1:]):
            visible.append(parts[0])
    if not words:
        raise FileNotFoundError(f"no words in {path}")
    return tuple(words), tuple(visible)


def cmudict_path() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def random_words(rng: random.Random, split: str) -> str:
    """3-11 random dictionary words; validation draws from a disjoint word half."""
    words, visible = cmu_words()
    n = rng.randint(3, 11)
    out = []
    for _ in range(n):
        pool = visible if rng.random() < 0.4 else words
        # Disjoint halves by a stable hash of the word keep val texts unseen.
        while True:
            w = rng.choice(pool)
            if (_stable_hash(w) % VAL_EVERY == 0) == (split == "val"):
                break
        out.append(w)
    text = " ".join(out)
    return text[0].upper() + text[1:] + rng.choice([".", ".", "?", "!", ","])


def random_syllables(language: str, rng: random.Random) -> str:
    """A pronounceable nonsense phrase of 3-10 syllables in ``language``."""
    if language in ("cmn", "yue"):
        chars = [rng.choice(_HANZI) for _ in range(rng.randint(3, 10))]
        cut = rng.randint(1, len(chars) - 1)
        return "".join(chars[:cut]) + "，" + "".join(chars[cut:]) + "。"
    cons, vowels = _SYLLABLE_LETTERS.get(language, ("bdfgklmnprstvz", "aeiou"))
    words = []
    for _ in range(rng.randint(2, 5)):
        word = "".join(rng.choice(cons) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        words.append(word)
    return " ".join(words) + "."


def _stable_hash(s: str) -> int:
    h = 2166136261
    for ch in s.encode("utf-8"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def english_text(rng: random.Random, split: str) -> str:
    """One English utterance: a sentence, random words, or two sentences."""
    r = rng.random()
    if r < 0.50:
        return pick_sentence(ENGLISH, rng, split)
    if r < 0.85:
        return random_words(rng, split)
    return pick_sentence(ENGLISH, rng, split) + " " + pick_sentence(ENGLISH, rng, split)


def foreign_text(language: str, rng: random.Random, split: str) -> str:
    pool = FOREIGN.get(language, ())
    if pool and rng.random() < 0.6:
        return pick_sentence(pool, rng, split)
    return random_syllables(language, rng)
