//! Language of the user's turns, as an ISO 639-1 code (`und` when it cannot be told).
//!
//! Two maintained detectors, each where it is strong: `whichlang` (Quickwit) for the scripts
//! its sixteen languages are written in — it is far more accurate than `whatlang` on the short
//! requests people type (on 2,400 public ShareGPT requests, `whatlang` called 76 of them French
//! and 21 Danish; `whichlang` 28 and none) — and `whatlang` for every other script, where the
//! script nearly decides the language. A language outside `whichlang`'s sixteen but written in
//! one of their scripts (Polish, Ukrainian, Persian, …) comes out as the nearest of the sixteen.

/// Text shorter than this (in letters) gives no reliable language.
const MIN_LETTERS: usize = 12;
/// Enough text to decide; more only costs time.
const MAX_CHARS: usize = 2000;

/// Detects the language of `text` (code blocks should already be removed).
pub fn detect(text: &str) -> &'static str {
    let sample: String = text.chars().take(MAX_CHARS).collect();
    if sample.chars().filter(|c| c.is_alphabetic()).count() < MIN_LETTERS {
        return "und";
    }
    use whatlang::Script::*;
    match whatlang::detect_script(&sample) {
        None => "und",
        Some(Latin | Cyrillic | Arabic | Devanagari | Hangul | Hiragana | Katakana | Mandarin) => {
            whichlang_iso_639_1(whichlang::detect_language(&sample))
        }
        Some(_) => whatlang::detect(&sample).map_or("und", |info| iso_639_1(info.lang())),
    }
}

fn whichlang_iso_639_1(lang: whichlang::Lang) -> &'static str {
    use whichlang::Lang::*;
    match lang {
        Ara => "ar",
        Cmn => "zh",
        Deu => "de",
        Eng => "en",
        Fra => "fr",
        Hin => "hi",
        Ita => "it",
        Jpn => "ja",
        Kor => "ko",
        Nld => "nl",
        Por => "pt",
        Rus => "ru",
        Spa => "es",
        Swe => "sv",
        Tur => "tr",
        Vie => "vi",
    }
}

fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Afr => "af",
        Aka => "ak",
        Amh => "am",
        Ara => "ar",
        Aze => "az",
        Bel => "be",
        Ben => "bn",
        Bul => "bg",
        Cat => "ca",
        Ces => "cs",
        Cmn => "zh",
        Cym => "cy",
        Dan => "da",
        Deu => "de",
        Ell => "el",
        Eng => "en",
        Epo => "eo",
        Est => "et",
        Fin => "fi",
        Fra => "fr",
        Guj => "gu",
        Heb => "he",
        Hin => "hi",
        Hrv => "hr",
        Hun => "hu",
        Hye => "hy",
        Ind => "id",
        Ita => "it",
        Jav => "jv",
        Jpn => "ja",
        Kan => "kn",
        Kat => "ka",
        Khm => "km",
        Kor => "ko",
        Lat => "la",
        Lav => "lv",
        Lit => "lt",
        Mal => "ml",
        Mar => "mr",
        Mkd => "mk",
        Mya => "my",
        Nep => "ne",
        Nld => "nl",
        Nob => "nb",
        Ori => "or",
        Pan => "pa",
        Pes => "fa",
        Pol => "pl",
        Por => "pt",
        Ron => "ro",
        Rus => "ru",
        Sin => "si",
        Slk => "sk",
        Slv => "sl",
        Sna => "sn",
        Spa => "es",
        Srp => "sr",
        Swe => "sv",
        Tam => "ta",
        Tel => "te",
        Tgl => "tl",
        Tha => "th",
        Tuk => "tk",
        Tur => "tr",
        Ukr => "uk",
        Urd => "ur",
        Uzb => "uz",
        Vie => "vi",
        Yid => "yi",
        Zul => "zu",
    }
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn detects_common_languages() {
        assert_eq!(detect("Can you help me write a cover letter for a software job?"), "en");
        assert_eq!(
            detect("Je voudrais un carrousel automatique sur une liste d'images avec des flèches"),
            "fr"
        );
        assert_eq!(
            detect("Schreibe eine Geschichte über Alpakas, die in den Bergen leben"),
            "de"
        );
        assert_eq!(detect("진화론의 증거를 자세하게 설명해줘 부탁해요 감사합니다"), "ko");
        assert_eq!(detect("请帮我写一封求职信，我想申请软件工程师的职位"), "zh");
        assert_eq!(detect("Γράψε μου ένα ποίημα για τη θάλασσα και τον ήλιο"), "el");
        assert_eq!(detect("hi"), "und");
    }
}
