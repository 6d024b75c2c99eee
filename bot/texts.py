"""What the bot says, in Arabic and English. Values are HTML templates: placeholders are
filled with already-escaped text (see `bot.render`)."""

from __future__ import annotations

from typing import Literal

Lang = Literal["ar", "en"]
LANGUAGES: tuple[Lang, ...] = ("ar", "en")

TEXTS: dict[str, dict[Lang, str]] = {
    "start": {
        "en": (
            "Hello! I answer questions about the US–Russia security talks of January 2022 "
            "and cite the news articles I quote.\n\n{about}\n\n{how_to}"
        ),
        "ar": (
            "مرحبًا! أجيب عن الأسئلة حول المحادثات الأمنية بين الولايات المتحدة وروسيا في يناير 2022 "
            "وأذكر المقالات الإخبارية التي أقتبس منها.\n\n{about}\n\n{how_to}"
        ),
    },
    "about": {
        "en": "I know {articles} articles, dated {first} to {last}.",
        "ar": "لديّ {articles} مقالة، مؤرخة من {first} إلى {last}.",
    },
    "about_empty": {
        "en": "My article collection is empty right now.",
        "ar": "مجموعة المقالات لديّ فارغة حاليًا.",
    },
    "how_to": {
        "en": (
            "<b>How to ask</b>\nWrite your question in Arabic or English. In groups, use /ask, "
            "mention me, or reply to my message.\n"
            "Examples:\n• {example_1}\n• {example_2}\n\n"
            "<b>Commands</b>\n"
            "/ask – ask a question\n/lang ar|en – language of my messages\n"
            "/subscribe [daily HH:MM | instant] – new-article digests\n/unsubscribe – stop digests\n"
            "/digest – the latest articles now\n/help – this help"
        ),
        "ar": (
            "<b>طريقة السؤال</b>\nاكتب سؤالك بالعربية أو الإنجليزية. في المجموعات استخدم /ask "
            "أو اذكرني أو ردّ على رسالتي.\n"
            "أمثلة:\n• {example_1}\n• {example_2}\n\n"
            "<b>الأوامر</b>\n"
            "/ask – اطرح سؤالًا\n/lang ar|en – لغة رسائلي\n"
            "/subscribe [daily HH:MM | instant] – ملخص المقالات الجديدة\n/unsubscribe – إيقاف الملخصات\n"
            "/digest – أحدث المقالات الآن\n/help – هذه المساعدة"
        ),
    },
    "example_1": {
        "en": "What did Russia demand at the Geneva talks?",
        "ar": "ماذا طلبت روسيا في محادثات جنيف؟",
    },
    "example_2": {
        "en": "What did NATO say after the NATO–Russia Council?",
        "ar": "ماذا قال الناتو بعد اجتماع مجلس الناتو وروسيا؟",
    },
    "decline_suggestion": {
        "en": "You could ask, for example:\n• {example_1}\n• {example_2}",
        "ar": "يمكنك أن تسأل مثلًا:\n• {example_1}\n• {example_2}",
    },
    "sources": {"en": "Sources", "ar": "المصادر"},
    "passages_button": {"en": "📄 passages", "ar": "📄 النصوص"},
    "passages_title": {"en": "📄 Passages", "ar": "📄 النصوص المقتبسة"},
    "page": {"en": "page {page}/{pages}", "ar": "صفحة {page}/{pages}"},
    "expired": {
        "en": "This answer is no longer available; please ask again.",
        "ar": "لم تعد هذه الإجابة متاحة؛ يُرجى طرح السؤال مجددًا.",
    },
    "feedback_thanks": {"en": "Thanks for the feedback!", "ar": "شكرًا على رأيك!"},
    "lang_set": {"en": "I will write to you in English.", "ar": "سأكتب لك بالعربية."},
    "lang_usage": {
        "en": "Usage: /lang ar or /lang en (now: {current}).",
        "ar": "الاستخدام: ‎/lang ar‎ أو ‎/lang en‎ (الحالية: {current}).",
    },
    "empty_question": {
        "en": "Please type a question, e.g. “{example_1}”",
        "ar": "يُرجى كتابة سؤال، مثلًا: «{example_1}»",
    },
    "too_long": {
        "en": "That message is too long for a question ({length} characters; the limit is {limit}). "
        "Please ask something shorter.",
        "ar": "هذه الرسالة أطول من أن تكون سؤالًا ({length} حرفًا؛ الحد {limit}). يُرجى طرح سؤال أقصر.",
    },
    "text_only": {
        "en": "I can only read text questions. Please type your question.",
        "ar": "لا أستطيع قراءة إلا الأسئلة المكتوبة. يُرجى كتابة سؤالك.",
    },
    "edited": {
        "en": "I don't re-answer edited messages; please send the question again as a new message.",
        "ar": "لا أعيد الإجابة عن الرسائل المعدّلة؛ يُرجى إرسال السؤال مجددًا في رسالة جديدة.",
    },
    "rate_limited": {
        "en": "You're asking faster than I can answer. Please wait a minute and try again.",
        "ar": "أسئلتك أسرع مما أستطيع الإجابة عنه. يُرجى الانتظار دقيقة ثم المحاولة مجددًا.",
    },
    "no_index": {
        "en": "My article index is being rebuilt. Please try again in a minute.",
        "ar": "يجري الآن إعادة بناء فهرس المقالات. يُرجى المحاولة بعد دقيقة.",
    },
    "store_unavailable": {
        "en": "My article index is temporarily unavailable. Please try again in a few minutes.",
        "ar": "فهرس المقالات غير متاح مؤقتًا. يُرجى المحاولة بعد بضع دقائق.",
    },
    "state_unavailable": {
        "en": "My database is temporarily unavailable. Please try again in a few minutes.",
        "ar": "قاعدة بياناتي غير متاحة مؤقتًا. يُرجى المحاولة بعد بضع دقائق.",
    },
    "error": {
        "en": "Sorry, something went wrong on my side. Please try again.",
        "ar": "عذرًا، حدث خطأ من جهتي. يُرجى المحاولة مجددًا.",
    },
    "unknown_command": {
        "en": "I don't know that command. See /help.",
        "ar": "لا أعرف هذا الأمر. راجع /help.",
    },
    "ask_usage": {
        "en": "Add your question after /ask, e.g. /ask {example_1}",
        "ar": "اكتب سؤالك بعد /ask، مثلًا: /ask {example_1}",
    },
    # --- subscriptions and digests ---------------------------------------------
    "subscribed_instant": {
        "en": "Subscribed: I will send you new articles as soon as they are added.",
        "ar": "تم الاشتراك: سأرسل إليك المقالات الجديدة فور إضافتها.",
    },
    "subscribed_daily": {
        "en": "Subscribed: a digest of new articles every day at {time} ({timezone}).",
        "ar": "تم الاشتراك: ملخص للمقالات الجديدة يوميًا في الساعة {time} ({timezone}).",
    },
    "subscribe_usage": {
        "en": "Usage: /subscribe, /subscribe instant or /subscribe daily HH:MM (e.g. daily 08:30).",
        "ar": "الاستخدام: /subscribe أو ‎/subscribe instant‎ أو ‎/subscribe daily HH:MM‎ (مثلًا daily 08:30).",
    },
    "unsubscribed": {
        "en": "Unsubscribed: no more digests.",
        "ar": "تم إلغاء الاشتراك: لن تصلك ملخصات بعد الآن.",
    },
    "not_subscribed": {"en": "You are not subscribed.", "ar": "لست مشتركًا."},
    "digest_new": {"en": "📰 New articles", "ar": "📰 مقالات جديدة"},
    "digest_latest": {"en": "📰 Latest articles", "ar": "📰 أحدث المقالات"},
    "digest_empty": {"en": "There are no articles yet.", "ar": "لا توجد مقالات بعد."},
    # --- admins -----------------------------------------------------------------
    "refused": {"en": "Sorry, I can't do that.", "ar": "عذرًا، لا أستطيع فعل ذلك."},
    "reindex_started": {
        "en": "⏳ Reindexing ({mode})…",
        "ar": "⏳ جارٍ إعادة الفهرسة ({mode})…",
    },
    "reindex_progress": {
        "en": "⏳ Reindexing ({mode}): {done}/{total} chunks embedded…",
        "ar": "⏳ جارٍ إعادة الفهرسة ({mode}): {done}/{total} مقطعًا…",
    },
    "reindex_busy": {
        "en": "A reindex is already running.",
        "ar": "إعادة الفهرسة جارية بالفعل.",
    },
    "reindex_done": {
        "en": (
            "✅ Reindex ({mode}) done in {seconds:.1f} s: {articles} articles ({added} new, {updated} updated, "
            "{removed} removed); chunks: {chunks_added} added, {chunks_removed} removed, "
            "{chunks_unchanged} unchanged. {announced} new for subscribers.{errors}"
        ),
        "ar": (
            "✅ اكتملت إعادة الفهرسة ({mode}) في {seconds:.1f} ث: {articles} مقالة ({added} جديدة، {updated} محدّثة، "
            "{removed} محذوفة)؛ المقاطع: {chunks_added} مضافة، {chunks_removed} محذوفة، "
            "{chunks_unchanged} دون تغيير. {announced} جديدة للمشتركين.{errors}"
        ),
    },
    "reindex_errors": {
        "en": "\nSkipped files:\n{errors}",
        "ar": "\nملفات تم تجاوزها:\n{errors}",
    },
    "reindex_failed": {
        "en": "❌ Reindex failed: {error}",
        "ar": "❌ فشلت إعادة الفهرسة: {error}",
    },
    "stats": {
        "en": (
            "<b>Index</b>: {articles} articles, {chunks} chunks ({first} – {last})\n"
            "<b>Users</b>: {users}, <b>subscribers</b>: {subscribers}\n"
            "<b>Today</b>: {questions} questions, {declines} declined, median answer time {median}"
        ),
        "ar": (
            "<b>الفهرس</b>: {articles} مقالة، {chunks} مقطعًا ({first} – {last})\n"
            "<b>المستخدمون</b>: {users}، <b>المشتركون</b>: {subscribers}\n"
            "<b>اليوم</b>: {questions} سؤالًا، {declines} مرفوضة، الوسيط لزمن الإجابة {median}"
        ),
    },
    "no_feedback": {"en": "No 👎 feedback yet.", "ar": "لا توجد تقييمات 👎 بعد."},
    "admin_how_to": {
        "en": (
            "<b>Admin commands</b>\n"
            "/addsource URL [name] – add a feed, sitemap or article page\n"
            "/removesource URL – remove a source\n"
            "/listsources – sources: last fetch, status, articles\n"
            "/fetch – poll every source now\n"
            "/ingest URL – add one article now\n"
            "/reindex [full] – reindex the corpus\n"
            "/stats – index and usage statistics\n"
            "/sources – articles in the index\n"
            "/feedback – latest 👎 feedback\n"
            "/health – index, model, Chroma, state database, last fetch"
        ),
        "ar": (
            "<b>أوامر المشرفين</b>\n"
            "‎/addsource URL [name]‎ – إضافة موجز أو خريطة موقع أو صفحة مقالة\n"
            "‎/removesource URL‎ – حذف مصدر\n"
            "/listsources – المصادر: آخر جلب وحالته وعدد المقالات\n"
            "/fetch – جلب كل المصادر الآن\n"
            "‎/ingest URL‎ – إضافة مقالة واحدة الآن\n"
            "‎/reindex [full]‎ – إعادة فهرسة المقالات\n"
            "/stats – إحصاءات الفهرس والاستخدام\n"
            "/sources – المقالات في الفهرس\n"
            "/feedback – آخر تقييمات 👎\n"
            "/health – حالة الفهرس والنموذج وChroma وقاعدة الحالة وآخر جلب"
        ),
    },
    # --- sources (admins) ---------------------------------------------------------
    "usage": {"en": "Usage: {usage}", "ar": "الاستخدام: ‎{usage}‎"},
    "source_checking": {"en": "⏳ Checking {url}…", "ar": "⏳ جارٍ فحص {url}…"},
    "source_added": {
        "en": "✅ {summary}\nIts articles come in with the next poll (within {minutes:g} min).",
        "ar": "✅ {summary}\nستصل مقالاته مع الجلب التالي (خلال {minutes:g} دقيقة).",
    },
    "source_removed": {
        "en": "🗑 Removed {label}; its articles stay in the corpus.",
        "ar": "🗑 حُذف المصدر {label}؛ وتبقى مقالاته في المجموعة.",
    },
    "unknown_source": {
        "en": "{url} is not a source. See /listsources.",
        "ar": "{url} ليس مصدرًا. راجع /listsources.",
    },
    "no_sources": {
        "en": "No sources yet: add one with /addsource URL.",
        "ar": "لا توجد مصادر بعد: أضف مصدرًا بالأمر ‎/addsource URL‎.",
    },
    "sources_header": {"en": "<b>Sources</b> ({count})", "ar": "<b>المصادر</b> ({count})"},
    "source_failed": {"en": "❌ {error}", "ar": "❌ تعذّر ذلك: {error}"},
    "ingest_started": {"en": "⏳ Fetching {url}…", "ar": "⏳ جارٍ جلب {url}…"},
    "ingest_done": {
        "en": "{icon} {summary}\n{announced} new for subscribers.",
        "ar": "{icon} {summary}\n{announced} جديدة للمشتركين.",
    },
    "fetch_started": {"en": "⏳ Polling the sources…", "ar": "⏳ جارٍ جلب المصادر…"},
    "fetch_busy": {"en": "A fetch is already running.", "ar": "الجلب جارٍ بالفعل."},
    "fetch_done": {
        "en": "✅ {summary}; {announced} new for subscribers.\n{sources}",
        "ar": "✅ {summary}؛ {announced} جديدة للمشتركين.\n{sources}",
    },
}


def text(key: str, lang: Lang, **values: object) -> str:
    """The text `key` in `lang`, with `values` filled in (examples are always available)."""
    examples = {name: TEXTS[name][lang] for name in ("example_1", "example_2")}
    return TEXTS[key][lang].format(**(examples | values))


def language_of(code: str | None) -> Lang:
    """The UI language for a Telegram `language_code` (Arabic for ar*, else English)."""
    return "ar" if code and code.lower().startswith("ar") else "en"
