//! Releases on a shared runner tried as a hostile pipeline author would: project B after
//! project A's production, the runner host's AWS credentials and ECR token, A's build
//! caches, A's private images. Each attack is refused or harmless; each test also shows what
//! the attacker was after works for its owner, so none can pass by accident.

use crate::support::host_network::{FakeMetadata, METADATA_ANSWER};
use crate::support::release::{Fixture, CLUSTER, FAMILY, SERVICE};
use crate::support::scripted_ecs::Script;
use crate::support::stand_ins::{Moto, Recorder, Registry};
use crate::support::*;

const A: &str = "group/project-a";
const B: &str = "group/project-b";

/// A runner whose operator granted project A its repository, cluster, service, family and
/// role, and project B only a repository of its own.
fn granted_to_a() -> Fixture {
    Fixture::new(
        &Moto::ecr_password(),
        &format!(
            "[[release.grants]]\nprojects = [\"{A}\"]\nregistries = [\"127.0.0.1:*\"]\n\
             repositories = [\"group/app\"]\nclusters = [\"{CLUSTER}\"]\nservices = [\"{SERVICE}\"]\n\
             task_families = [\"{FAMILY}\"]\nroles = [\"arn:aws:iam::123456789012:role/ecsTaskExecutionRole\"]\n\
             [[release.grants]]\nprojects = [\"{B}\"]\nregistries = [\"127.0.0.1:*\"]\n\
             repositories = [\"group/b-app\"]\n\
             [[release.grants]]\nprojects = [\"group/project-c\"]\nregistries = [\"127.0.0.1:*\"]\n\
             repositories = [\"group/app\"]\nclusters = [\"{CLUSTER}\"]\nservices = [\"{SERVICE}\"]\n\
             task_families = [\"{FAMILY}\"]\nroles = [\"arn:aws:iam::123456789012:role/c-*\"]\n"
        ),
    )
}

/// `job` as a job of `project`: the same project id for every job of a project, as GitLab
/// gives them, and new ids in each run of the suite, so no run finds an earlier run's build
/// cache.
fn of(project: &str, mut job: Job) -> Job {
    static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let first = *FIRST.get_or_init(|| runner::unique_id() * 10);
    job.project_id = first
        + match project {
            A => 1,
            B => 2,
            _ => 3,
        };
    job.project_path = project.into();
    job
}

#[test]
fn a_project_releases_nothing_of_another_with_the_host_credentials() {
    let mut f = granted_to_a();
    let ecs = f.scripted_ecs(&format!("{}:v1.2.2", f.repository()), Script::default());
    f.use_ecs(&ecs);
    // Where B's refused jobs would send AWS calls: nothing may arrive.
    let aws = Recorder::start();
    let mut b_runner = f.env.runner.clone();
    b_runner
        .process_env
        .retain(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL"));
    b_runner
        .process_env
        .push(("AWS_ENDPOINT_URL".into(), aws.url()));
    for (what, job, refused) in [
        (
            "A's repository, cluster and service",
            of(B, f.job("deploy", "v1.2.3", true)),
            "may not release to repository group/app",
        ),
        (
            "A's service with B's own repository",
            of(B, f.job("deploy", "v1.2.3", true)).var("ECR_REPOSITORY", "group/b-app"),
            "may not release to ECS service your-service-name of cluster your-cluster-name",
        ),
        (
            "A's service through a pre-deploy task with A's task role",
            of(B, f.job("deploy", "v1.2.3", true))
                .var("ECR_REPOSITORY", "group/b-app")
                .var("ECS_PRE_DEPLOY_COMMAND", "cat /proc/self/environ"),
            "may not release to ECS service your-service-name",
        ),
        (
            "A's family named outright",
            of(A, f.job("deploy", "v1.2.3", true)).var("TASK_DEFINITION", "billing:3"),
            "may not release to task definition family billing",
        ),
    ] {
        let result = b_runner.run(&job);
        assert_eq!(result.status, Status::Failed(1), "{what}: {}", result.log);
        assert_logged(&result.log, refused);
        assert_logged(&result.log, "release.grants");
        assert_eq!(result.calls_of("prepare").len(), 1, "{what}: not retried");
    }
    assert_eq!(
        aws.connections(),
        0,
        "an AWS call was made: {}",
        aws.received()
    );
    assert!(ecs.operations().is_empty(), "{:?}", ecs.operations());
    assert!(f.registry.tags("group/app").is_empty());

    // An unprotected tag releases nothing, even A's.
    let mut unprotected = of(A, f.job("deploy", "v1.2.3", true));
    unprotected.protected = false;
    let result = f.env.runner.run(&unprotected);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "tag `v1.2.3` is not protected");
    assert!(ecs.operations().is_empty());

    // C is granted the service but not the role its task definition carries: refused
    // before the image is built or anything registered.
    let result = f
        .env
        .runner
        .run(&of("group/project-c", f.job("deploy", "v1.2.3", true)));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        "runs IAM role arn:aws:iam::123456789012:role/ecsTaskExecutionRole, which release.grants",
    );
    assert!(ecs.requests("RegisterTaskDefinition").is_empty());
    assert!(f.registry.tags("group/app").is_empty());

    // What the grants grant, A releases.
    let result = f.env.runner.run(&of(A, f.job("deploy", "v1.2.3", true)));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(ecs.requests("UpdateService").len(), 1);
}

#[test]
fn no_grant_no_release_with_the_host_credentials() {
    // The operator's settings grant nothing: the fixture's grant is replaced by none.
    let f = Fixture::new(&Moto::ecr_password(), "[release]\ngrants = []\n");
    let result = f.env.runner.run(&of(A, f.job("build", "v1.2.3", true)));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, &format!("project {A} may not release"));
    assert!(f.registry.tags("group/app").is_empty());
}

#[test]
fn the_ecr_token_goes_to_no_registry_but_the_one_ecr_issued_it_for() {
    // The fixture grants any registry: what refuses here is the token's own rule.
    let f = Fixture::new(&Moto::ecr_password(), "");
    let attacker = Recorder::start();
    for (registry, refused) in [
        // B's own server.
        (
            attacker.address.clone(),
            "is not the registry the ECR token",
        ),
        // ECR's name in another region: the token is regional.
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string(),
            "is not the registry the ECR token",
        ),
        // A name that only starts like ECR's.
        (
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com.attacker.example".to_string(),
            "is not the registry the ECR token",
        ),
    ] {
        let job = f
            .job("build", "v1.2.3", true)
            .var("ECR_REGISTRY", &registry);
        let result = f.env.runner.run(&job);
        assert_eq!(
            result.status,
            Status::Failed(1),
            "{registry}: {}",
            result.log
        );
        assert_logged(&result.log, refused);
        assert_logged(&result.log, "aws.ecr_token_registries");
        assert_eq!(result.calls_of("prepare").len(), 1);
    }
    // Another account's ECR registry in the release's region passes the first look, but is
    // not the one the token was issued for: refused once ECR names its own.
    let other = "999999999999.dkr.ecr.ap-northeast-1.amazonaws.com";
    let result = f
        .env
        .runner
        .run(&f.job("build", "v1.2.3", true).var("ECR_REGISTRY", other));
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(
        &result.log,
        &format!("ECR_REGISTRY {other} is not the registry the ECR token of these credentials is for (123456789012.dkr.ecr.ap-northeast-1.amazonaws.com)"),
    );
    assert_eq!(attacker.connections(), 0, "{}", attacker.received());
    assert!(!attacker.received().contains("Authorization"));
}

/// A Dockerfile on the fixture's base image running `steps`.
fn dockerfile(f: &Fixture, steps: &str) -> String {
    format!("FROM {}\n{steps}\nCOPY app.sh /app.sh\n", f.base())
}

#[test]
fn build_cache_mounts_and_cached_steps_never_cross_projects() {
    let f = Fixture::new(&Moto::ecr_password(), "");
    // A fills its pip cache; a marker of its own and a guessed id.
    f.commit_file(
        "Dockerfile",
        &dockerfile(
            &f,
            "RUN --mount=type=cache,target=/root/.cache/pip echo a-wheel > /root/.cache/pip/from-a\n\
             RUN --mount=type=cache,id=pip,target=/c echo a-wheel > /c/from-a",
        ),
    );
    f.tag("v3.0.0");
    let result = f.env.runner.run(&of(A, f.job("build", "v3.0.0", true)));
    assert_eq!(result.status, Status::Success, "{}", result.log);

    // B mounts the same caches, by target and by the guessed id, reads and poisons them.
    f.commit_file(
        "Dockerfile",
        &dockerfile(
            &f,
            "RUN --mount=type=cache,target=/root/.cache/pip echo \"b sees [$(cat /root/.cache/pip/from-a 2>/dev/null)]\" && echo poison > /root/.cache/pip/from-b\n\
             RUN --mount=type=cache,id=pip,target=/c echo \"b sees id [$(cat /c/from-a 2>/dev/null)]\" && echo poison > /c/from-b",
        ),
    );
    f.tag("v3.0.1");
    let job = of(B, f.job("build", "v3.0.1", true)).var("ECR_REPOSITORY", "group/b-app");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "b sees []");
    assert_logged(&result.log, "b sees id []");

    // A's next build finds its own cache, and nothing of B's.
    f.commit_file(
        "Dockerfile",
        &dockerfile(
            &f,
            "RUN --mount=type=cache,target=/root/.cache/pip echo \"a sees [$(ls /root/.cache/pip)]\"\n\
             RUN --mount=type=cache,id=pip,target=/c echo \"a sees id [$(ls /c)]\"",
        ),
    );
    f.tag("v3.0.2");
    let result = f.env.runner.run(&of(A, f.job("build", "v3.0.2", true)));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "a sees [from-a]");
    assert_logged(&result.log, "a sees id [from-a]");
}

#[test]
fn a_copied_secret_step_does_not_hand_another_project_what_the_secret_made() {
    let f = Fixture::new(&Moto::ecr_password(), "");
    // The step needs the secret to run; a cached result does not.
    let steps = "RUN --mount=type=secret,id=NPM_TOKEN test -s /run/secrets/NPM_TOKEN && sha256sum /run/secrets/NPM_TOKEN > /made-with-the-secret";
    f.commit_file("Dockerfile", &dockerfile(&f, steps));
    f.tag("v4.0.0");
    let with_secret = of(A, f.job("build", "v4.0.0", true))
        .masked("NPM_TOKEN", "npm-token-of-project-a")
        .var("DOCKER_BUILD_SECRETS", "NPM_TOKEN");
    let result = f.env.runner.run(&with_secret);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    // A's own re-release without the secret reuses its cached step: the cache works.
    f.tag("v4.0.1");
    let result = f.env.runner.run(&of(A, f.job("build", "v4.0.1", true)));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert!(
        result
            .log
            .lines()
            .any(|l| l.contains("CACHED") || l.contains("Using cache")),
        "{}",
        result.log
    );

    // B copies the step without the secret: it runs, and fails, rather than reusing A's.
    f.tag("v4.0.2");
    let job = of(B, f.job("build", "v4.0.2", true)).var("ECR_REPOSITORY", "group/b-app");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "the image build failed");
    assert!(f.registry.tags("group/b-app").is_empty());
}

#[test]
fn another_projects_private_image_is_not_used_without_its_credentials() {
    // A's private registry, with a password only A has.
    let private = Registry::start("private-password-of-a");
    let image = private.push(base_image(), "a/private-tool", "1");

    // Ordinary jobs under the default pull policy: A pulls with its credentials; B, naming
    // the image the engine now holds, is asked for its own.
    let env = TestEnv::with_settings("[docker]\npull_policy = \"always\"");
    let a = of(A, Job::test(&image, &["echo A ran its tool"]))
        .masked("DOCKER_AUTH_CONFIG", &private.auth_config());
    let mut a = a;
    a.pull_policy.clear();
    let result = env.runner.run(&a);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    let mut b = of(B, Job::test(&image, &["echo B RAN THE TOOL OF A"]));
    b.pull_policy.clear();
    let result = env.runner.run(&b);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert!(
        !result.log.contains("\nB RAN THE TOOL OF A"),
        "{}",
        result.log
    );
    assert_logged(&result.log, "the registry refused access to image");
    // `if-not-present` is what hands it over: the documented opt-in for one-project hosts.
    let open = TestEnv::with_settings("[docker]\npull_policy = \"if-not-present\"");
    let result = open.runner.run(&b);
    assert_eq!(result.status, Status::Success, "{}", result.log);

    // A release's FROM is resolved with the registry too, with the job's credentials.
    let f = Fixture::new(&Moto::ecr_password(), "");
    f.commit_file(
        "Dockerfile",
        &format!("FROM {image}\nRUN echo built on the private tool\n"),
    );
    f.tag("v5.0.0");
    let job =
        of(A, f.job("build", "v5.0.0", true)).masked("DOCKER_AUTH_CONFIG", &private.auth_config());
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    f.tag("v5.0.1");
    let job = of(B, f.job("build", "v5.0.1", true)).var("ECR_REPOSITORY", "group/b-app");
    let result = f.env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "the image build failed");
    assert!(f.registry.tags("group/b-app").is_empty());
}

/// Images the engine holds under `prefix`.
fn images_named(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .expect("docker cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_failed_push_or_a_killed_release_leaves_no_image_a_later_job_could_take() {
    // A registry that takes no pushes: the build succeeds, the push fails.
    let read_only = Registry::start_read_only(&Moto::ecr_password());
    let f = Fixture::new(&Moto::ecr_password(), "");
    f.allow_ecr_token_to(&read_only.host);
    let env = &f.env;
    let job = f
        .job("build", "v1.2.3", true)
        .var("ECR_REGISTRY", &read_only.host)
        .masked("DOCKER_AUTH_CONFIG", &f.registry.auth_config());
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Failed(1), "{}", result.log);
    assert_logged(&result.log, "Built ");
    assert_eq!(images_named(&read_only.host), Vec::<String>::new());
    // Only this job's local name: other tests' releases build beside it.
    let own = gitlab_ecs_executor::docker::JobNames::new(&job.identity(&env.runner));
    assert_eq!(
        images_named(&format!("gitlab-ecs-executor-release/{}:", own.key())),
        Vec::<String>::new()
    );

    // A release killed mid-push leaves its build under its own name and the registry's;
    // the job's cleanup removes both.
    let job = Job::test(base_image(), &["true"]);
    let key = gitlab_ecs_executor::docker::JobNames::new(&job.identity(&env.runner));
    let left = [
        format!("gitlab-ecs-executor-release/{}:v9.9.9", key.key()),
        format!("{}/group/app:v9.9.9", read_only.host),
    ];
    // An image of its own, as a build is: its other names are not the release's to remove.
    let built = images::build_once(
        "killed-release",
        &format!("FROM {}\nLABEL built-by=a-release\n", base_image()),
    );
    for name in &left {
        let tagged = std::process::Command::new("docker")
            .args(["tag", &built, name])
            .status()
            .unwrap();
        assert!(tagged.success());
    }
    let result = env.runner.run(&job);
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_eq!(images_named(&read_only.host), Vec::<String>::new());
    assert_eq!(
        images_named(&format!("gitlab-ecs-executor-release/{}", key.key())),
        Vec::<String>::new()
    );
    assert!(
        images::image_exists(&built),
        "a name not of the release was removed"
    );
}

#[test]
fn a_release_builds_run_steps_reach_no_metadata_service() {
    let _metadata = FakeMetadata::start();
    let f = Fixture::new(&Moto::ecr_password(), "");
    f.commit_file(
        "Dockerfile",
        &dockerfile(
            &f,
            "RUN wget -T 3 -q -O- http://169.254.169.254/latest/meta-data/ami-id || echo \"metadata blocked\"",
        ),
    );
    f.tag("v6.0.0");
    let result = f.env.runner.run(&f.job("build", "v6.0.0", true));
    assert_eq!(result.status, Status::Success, "{}", result.log);
    assert_logged(&result.log, "metadata blocked");
    assert!(!result.log.contains(METADATA_ANSWER), "{}", result.log);
}
