"""A deploy walks the whole flowchart on the emulators: merged, built, canaried, rolled out, done."""

from tests.fixtures.world import REQUESTER, Train


async def test_a_deploy_goes_from_queue_to_completed(train: Train) -> None:
    pr = train.new_pr("Add a banner")
    deploy = await train.request(pr)
    assert deploy.state == "queued"

    at_gate = await train.reaches(deploy.id, "canary_check")
    assert at_gate.merge_sha and at_gate.build_url
    image = train.sandbox.image(at_gate.merge_sha)
    assert train.sandbox.aws.running_images("production", "app-web-canary") == [image]

    await train.press(deploy.id, "Proceed", REQUESTER)
    await train.reaches(deploy.id, "awaiting_confirmation", within=30)
    assert set(train.sandbox.aws.running_images("production", "app-web")) == {image}
    assert set(train.sandbox.aws.running_images("production", "app-worker")) == {image}

    await train.press(deploy.id, "Done", REQUESTER)
    done = await train.reaches(deploy.id, "completed")
    assert done.finished_at is not None
