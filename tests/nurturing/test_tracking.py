"""Open and click tracking: stored links, signed tokens, activities that move the score."""

import base64
import json
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from leads.models import Activity
from nurturing.compliance import prepare_marketing_email
from nurturing.models import EmailLink, Enrolment, Sequence, SequenceStep, StepSend
from nurturing.services import email_enqueue_message
from nurturing.tracking import make_token
from scoring.models import ContactScore, RescoreRequest
from scoring.services import contacts_rescore
from scoring.tasks import score_pending

from ..factories import ContactFactory

pytestmark = pytest.mark.django_db
BODY_HTML = (
    '<p>Hello Ada, read <a href="https://docs.example/guide?utm_source=email&amp;utm_medium=nurture">the guide</a>, '
    '<a href="http://blog.example/post" rel="noopener noreferrer">the post</a> '
    'or <a href="mailto:sales@crm.example">write to us</a>.</p>'
)


@pytest.fixture
def contact():
    return ContactFactory(email="ada@acme.example", first_name="Ada")


def queue_marketing_email(contact, *, key="nurture:1:1"):
    email = email_enqueue_message(
        key=key,
        to=contact.email,
        subject="A guide",
        body_text="Hello Ada",
        body_html=BODY_HTML,
        contact=contact,
        marketing=True,
    )
    prepare_marketing_email(email)
    return email


def tracked_paths(email, prefix):
    hrefs = [part.split('"', 1)[0] for part in email.body_html.split('href="')[1:]]
    srcs = [part.split('"', 1)[0] for part in email.body_html.split('src="')[1:]]
    return [urlsplit(url).path for url in hrefs + srcs if urlsplit(url).path.startswith(prefix)]


def open_path(email):
    [path] = tracked_paths(email, "/e/o/")
    return path


def forged(path, value):
    """The same signed link with its payload swapped for `value`: what an attacker would try."""
    token = path.rstrip("/").rsplit("/", 1)[1]
    _, signed_at, signature = token.split(":")
    payload = base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")
    return path.replace(token, f"{payload}:{signed_at}:{signature}")


def activities(contact, type_key):
    return Activity.objects.filter(contact=contact, type__key=type_key)


# --- the prepared email ----------------------------------------------------------------------------


def test_every_web_link_is_stored_and_replaced_by_a_tracked_one(contact):
    email = queue_marketing_email(contact)

    stored = list(email.links.values_list("position", "url"))
    assert stored == [
        (1, "https://docs.example/guide?utm_source=email&utm_medium=nurture"),
        (2, "http://blog.example/post"),
    ]
    assert len(tracked_paths(email, "/e/c/")) == 2
    assert "docs.example" not in email.body_html and "blog.example" not in email.body_html
    assert 'href="mailto:sales@crm.example"' in email.body_html
    assert ">the guide</a>" in email.body_html and 'rel="noopener noreferrer"' in email.body_html


def test_the_html_part_ends_with_an_open_pixel(contact, settings):
    email = queue_marketing_email(contact)

    assert email.body_html.rstrip().endswith('width="1" height="1" alt="" style="display:block;border:0">')
    assert f'<img src="{settings.SITE_URL}/e/o/' in email.body_html


# --- opens ------------------------------------------------------------------------------------------


def test_the_pixel_is_a_gif_and_counts_one_open_however_often_it_loads(contact, client):
    email = queue_marketing_email(contact)

    responses = [client.get(open_path(email)) for _ in range(3)]

    assert {(r.status_code, r["Content-Type"]) for r in responses} == {(200, "image/gif")}
    assert responses[0].content.startswith(b"GIF89a")
    assert activities(contact, "email_open").count() == 1


def pending_ids() -> list[int]:
    return list(RescoreRequest.objects.values_list("contact_id", flat=True))


def test_an_open_raises_the_contacts_score(contact, client, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(score_pending, "apply_async", lambda **options: queued.append(pending_ids()) or score_pending())
    contacts_rescore(contact_ids=[contact.pk], reason="before the email")
    before = ContactScore.objects.get(contact=contact).total
    email = queue_marketing_email(contact)

    with django_capture_on_commit_callbacks(execute=True):
        client.get(open_path(email))

    assert queued == [[contact.pk]]
    assert ContactScore.objects.get(contact=contact).total == before + 1  # the default model's "Email opens" rule


def test_a_tampered_pixel_records_nothing(contact, client):
    email = queue_marketing_email(contact)
    other = queue_marketing_email(ContactFactory(), key="nurture:2:1")

    assert client.get(forged(open_path(email), other.pk)).status_code == 404
    assert client.get(f"/e/o/{make_token(email.pk, purpose='click')}/").status_code == 404
    assert not Activity.objects.filter(type__key="email_open").exists()


# --- clicks ----------------------------------------------------------------------------------------


def test_a_click_redirects_to_the_stored_link_and_is_recorded(contact, client):
    email = queue_marketing_email(contact)
    guide, post = tracked_paths(email, "/e/c/")

    response = client.get(guide)
    client.get(post)

    assert response.status_code == 302
    assert response["Location"] == "https://docs.example/guide?utm_source=email&utm_medium=nurture"
    urls = sorted(a.properties["url"] for a in activities(contact, "email_click"))
    assert urls == ["http://blog.example/post", "https://docs.example/guide?utm_source=email&utm_medium=nurture"]


def test_a_click_names_the_sequence_step_as_campaign(contact, client):
    sequence = Sequence.objects.create(name="Content track", status="active")
    step = SequenceStep.objects.create(sequence=sequence, position=2, subject="A guide", body="…")
    enrolment = Enrolment.objects.create(sequence=sequence, contact=contact, enrolled_at=timezone.now())
    email = queue_marketing_email(contact)
    StepSend.objects.create(enrolment=enrolment, step=step, email=email)

    client.get(tracked_paths(email, "/e/c/")[0])

    assert activities(contact, "email_click").get().properties["campaign"] == "Content track · step 2"


def test_clicking_the_same_link_again_still_redirects_but_counts_once(contact, client):
    email = queue_marketing_email(contact)
    guide = tracked_paths(email, "/e/c/")[0]

    responses = [client.get(guide) for _ in range(2)]

    assert [r.status_code for r in responses] == [302, 302]
    assert activities(contact, "email_click").count() == 1


def test_unknown_or_tampered_click_links_are_404(contact, client):
    email = queue_marketing_email(contact)
    guide = tracked_paths(email, "/e/c/")[0]
    missing_link_id = EmailLink.objects.order_by("-pk").first().pk + 100

    paths = [
        forged(guide, missing_link_id),
        f"/e/c/{make_token(missing_link_id, purpose='click')}/",
        f"/e/c/{make_token(email.links.first().pk, purpose='open')}/",
        "/e/c/nonsense/",
    ]

    assert [client.get(path).status_code for path in paths] == [404, 404, 404, 404]
    assert not Activity.objects.filter(type__key="email_click").exists()


def test_the_request_cannot_choose_where_a_click_goes(contact, client):
    email = queue_marketing_email(contact)
    guide = tracked_paths(email, "/e/c/")[0]

    with_next = client.get(guide + "?next=//evil.example&url=https://evil.example/")
    signed_url = client.get(f"/e/c/{make_token('https://evil.example/', purpose='click')}/")

    assert with_next["Location"] == "https://docs.example/guide?utm_source=email&utm_medium=nurture"
    assert signed_url.status_code == 404


def test_a_link_prefetch_with_head_is_not_a_click(contact, client):
    email = queue_marketing_email(contact)

    response = client.head(tracked_paths(email, "/e/c/")[0])

    assert response.status_code == 302
    assert not activities(contact, "email_click").exists()
